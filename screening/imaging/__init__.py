"""Reading radiographs (JPEG, PNG, DICOM) and preprocessing them the way a model version expects."""
