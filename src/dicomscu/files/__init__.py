"""Local DICOM files: finding them on disk and reading what sending needs."""
