"""From a file to what the model sees: reading JPEG, PNG and DICOM, the rules on what may be scored, and the
preprocessing spec a model version was trained with. `imaging.pipeline` is the one path every scorer uses."""
