"""The results store: model registry, batches and one result row per image and model version."""
