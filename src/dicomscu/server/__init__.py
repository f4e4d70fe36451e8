"""The embedded PACS (dicomscu serve): SCP, index, matching."""
