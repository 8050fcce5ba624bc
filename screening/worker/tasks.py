"""Celery tasks: thin wrappers over screen_chunk. Messages carry result-row ids only, never paths."""

from __future__ import annotations

from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from screening.config import load_settings
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, SCREEN_CHUNK_TASK, app
from screening.worker.chunk import WorkerRuntime, screen_chunk

_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime.create(load_settings())
    return _runtime


@worker_process_init.connect
def _new_worker_process(**_: object) -> None:
    """After the fork: fresh database connections for this process (the model loads on first use)."""
    global _runtime
    _runtime = None


@app.task(
    name=SCREEN_CHUNK_TASK,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def screen_chunk_task(result_ids: list[int]) -> dict:
    return screen_chunk(runtime(), result_ids).as_dict()


@app.task(name=NIGHTLY_RETRAIN_TASK)
def nightly_retrain_task() -> str:
    """What Celery beat runs each night: `screen retrain` with the active version's own training data."""
    from screening.training.retrain import retrain_active  # loads a backend: only in the process that trains

    return retrain_active(runtime().session_factory, runtime().settings).describe()
