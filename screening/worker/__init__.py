"""Scoring a chunk of images in one process: the per-process runtime (pool, loaded model) and the stages
read -> prepare (imaging.pipeline) -> infer, with identical pixels scored once."""
