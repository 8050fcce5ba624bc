"""Training: patient-wise splits, cached backbone features, a head, thresholds, and artifacts."""
