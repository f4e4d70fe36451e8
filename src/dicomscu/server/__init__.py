"""The embedded PACS (dicomscu serve): SCP, index, matching."""

#: The port serve listens on when none is given (the usual unprivileged DICOM port).
SERVE_PORT = 11112
