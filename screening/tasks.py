"""Celery tasks: take the JSON message, call one use case, return a PHI-free summary.

Messages carry result-row ids only, never paths. This module imports the Celery app (the app
names no task module); `screen worker` imports this module before it starts the worker.
"""

from __future__ import annotations

from contextlib import ExitStack

from celery.signals import celeryd_init, task_received, worker_process_init, worker_ready, worker_shutdown
from sqlalchemy.exc import OperationalError

from screening.config import load_settings
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, SCREEN_CHUNK_TASK, SEND_RESULT_TASK, app
from screening.usecases.context import Services, connect
from screening.usecases.outbox import send_object
from screening.usecases.recover import Holder, keeping, reserve_chunk, worker_holder
from screening.usecases.screen_chunk import WorkerRuntime, announce_worker_process, screen_chunk, worker_runtime

_runtime: WorkerRuntime | None = None
# The worker's main process: its connections, and its name as the holder of the rows it receives (set before the
# pool forks, so every pool process screens under it)
_main: Services | None = None
_worker: Holder | None = None
_keeper = ExitStack()


def runtime() -> WorkerRuntime:
    """This process's database connections, thread pool and loaded model, made on first use after the fork."""
    global _runtime
    if _runtime is None:
        assert _worker is not None, "a pool process is forked after celeryd_init"
        _runtime = worker_runtime(load_settings(), _worker)
    return _runtime


@celeryd_init.connect
def _name_worker(sender: str, **_: object) -> None:
    global _main, _worker
    _main = connect(load_settings())
    _worker = worker_holder(_main, sender)


@task_received.connect
def _reserve(request: object, **_: object) -> None:
    """In the main process, as a message arrives: its rows are held by this worker until a pool process starts."""
    if _main and _worker and getattr(request, "name", None) == SCREEN_CHUNK_TASK:
        reserve_chunk(_main, _worker, list(request.args[0]))  # type: ignore[attr-defined]


@worker_ready.connect
def _keep(**_: object) -> None:
    """Renew what this worker reserved, and take over what dead workers stranded, every heartbeat."""
    if _main and _worker:
        _keeper.enter_context(keeping(_main, _worker))


@worker_shutdown.connect
def _stop_keeping(**_: object) -> None:
    _keeper.close()


@worker_process_init.connect
def _new_worker_process(**_: object) -> None:
    """After the fork: no connection of the parent's is reused (the model loads on first use)."""
    global _runtime
    _runtime = None
    if _main is not None:
        _main.engine.dispose(close=False)  # the main process's connections stay its own
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
