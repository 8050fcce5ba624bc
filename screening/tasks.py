"""Celery tasks: take the JSON message, call one use case, return a PHI-free summary.

Messages carry result-row ids only, never paths. This module imports the Celery app (the app
names no task module); `screen worker` imports this module before it starts the worker.
"""

from __future__ import annotations

from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from screening.config import load_settings
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, SCREEN_CHUNK_TASK, SEND_RESULT_TASK, app
from screening.usecases.context import connect
from screening.usecases.outbox import send_object
from screening.usecases.screen_chunk import WorkerRuntime, announce_worker_process, screen_chunk, worker_runtime

_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    """This process's database connections, thread pool and loaded model, made on first use after the fork."""
    global _runtime
    if _runtime is None:
        _runtime = worker_runtime(load_settings())
    return _runtime


@worker_process_init.connect
def _new_worker_process(**_: object) -> None:
    """After the fork: no connection of the parent's is reused (the model loads on first use)."""
    global _runtime
    _runtime = None
    announce_worker_process(load_settings())


@app.task(
    name=SCREEN_CHUNK_TASK,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def screen_chunk_task(result_ids: list[int]) -> dict:
    return screen_chunk(runtime(), result_ids).as_dict()


@app.task(name=SEND_RESULT_TASK, bind=True, max_retries=None)
def send_result_task(self, object_id: int) -> str:  # noqa: ANN001
    """One attempt to send a DICOM result; retried after the recorded back-off until sent or failed for good (the
    attempts are counted in the database, so the retries are bounded however often the message is delivered)."""
    entry = send_object(connect(load_settings()), object_id)
    if entry.waiting_for_retry:
        raise self.retry(countdown=entry.retry_in_s or 0)
    return f"result object {entry.id}: {entry.status}"


# Acknowledged on receipt, unlike the chunks: a retrain that dies or overruns must not be redelivered and run
# again. The night is also claimed in the database, so even a duplicated message trains once.
@app.task(name=NIGHTLY_RETRAIN_TASK, bind=True, acks_late=False, reject_on_worker_lost=False)
def nightly_retrain_task(self) -> str:  # noqa: ANN001
    """What Celery beat runs each night: `screen retrain` with the active version's own training data."""
    from screening.usecases.retrain import nightly_retrain  # loads a backend: only in the process that trains

    return nightly_retrain(connect(load_settings()), self.request.id)
