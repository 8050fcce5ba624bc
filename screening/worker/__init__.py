"""Screening a chunk of queued images: read -> decode -> preprocess -> infer -> write."""
