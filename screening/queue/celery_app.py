"""The Celery application: JSON messages only, settings that suit a model loaded per process."""

from __future__ import annotations

from celery import Celery

from screening.config import Settings, load_settings

SCREEN_CHUNK_TASK = "screening.screen_chunk"


def make_celery(settings: Settings) -> Celery:
    app = Celery("screening", broker=settings.broker_url or "memory://", include=["screening.worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in the SQL table
        task_acks_late=True,  # a chunk is acknowledged only once its rows are written
        task_reject_on_worker_lost=True,  # a killed worker's chunk goes back on the queue
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,  # for Flower
        task_send_sent_event=True,
        task_default_queue="screening",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    )
    return app


app = make_celery(load_settings())
