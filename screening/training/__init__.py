"""Training a model version: labelled folders, patient-wise splits, cached backbone features, the named training
steps (features -> head -> fine-tune -> calibrate -> package), metrics, reports, and what retraining keeps fixed."""
