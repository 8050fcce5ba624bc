"""Finding images, recording batches, claiming each image once per model version, and handing chunks of result ids
to workers through Redis (the Celery app, which names no task module: screening.tasks registers the tasks)."""
