"""The review app's routes, one router per resource (FastAPI's full-stack layout)."""
