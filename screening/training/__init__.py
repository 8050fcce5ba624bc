"""Training a model version: labelled folders and their manifest.csv, patient-wise splits, cached backbone features,
the training steps as functions of values (features -> head -> fine-tune -> calibrate -> gate -> operating points
-> check -> package, each returning a record), augmentation, progress and checkpoints, the gate's images, metrics,
reports, and what retraining keeps fixed."""
