"""The Celery application: JSON messages only, settings that suit a model loaded per process."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from screening.config import Settings, load_settings

SCREEN_CHUNK_TASK = "screening.screen_chunk"
NIGHTLY_RETRAIN_TASK = "screening.nightly_retrain"
SEND_RESULT_TASK = "screening.send_result"


def cron(expression: str) -> crontab:
    """A crontab line's five fields (minute hour day-of-month month day-of-week) as a Celery schedule."""
    minute, hour, day_of_month, month, day_of_week = expression.split()
    return crontab(minute, hour, day_of_week, day_of_month, month)


def make_celery(settings: Settings) -> Celery:
    app = Celery("screening", broker=settings.broker_url or "memory://")
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
        # Retraining runs on its own queue, so a `screen worker --queues training` takes it, not the screeners.
        task_routes={NIGHTLY_RETRAIN_TASK: {"queue": "training"}},
        beat_schedule={"nightly-retrain": {"task": NIGHTLY_RETRAIN_TASK, "schedule": cron(settings.retrain_schedule)}},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart, however long
        # `screen enqueue` keeps publishing through a broker restart of up to about a minute.
        task_publish_retry_policy={
            "max_retries": settings.publish_max_retries,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Look for chunks of vanished workers every few seconds, not kombu's default ~100 s.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 5)),
            "unacked_restore_throttle": 1,
        },
    )
    return app


app = make_celery(load_settings())
