"""Celery tasks: thin wrappers over screen_chunk. Messages carry result-row ids only, never paths."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from screening.config import load_settings
from screening.model.device import current_device
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, SCREEN_CHUNK_TASK, app
from screening.worker.chunk import WorkerRuntime, screen_chunk

logger = logging.getLogger(__name__)

_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime.create(load_settings())
    return _runtime


@worker_process_init.connect
def _new_worker_process(**_: object) -> None:
    """After the fork: fresh database connections for this process (the model loads on first use), and the
    backend and device it computes on, in its log; a GPU asked for and not found is a warning, never silent."""
    global _runtime
    _runtime = None
    settings = load_settings()
    device = current_device()
    logger.info("worker process %s: %s, dtype policy %s", os.getpid(), device.describe(), settings.dtype_policy)
    wants_gpu = settings.device == "gpu" or settings.dtype_policy != "float32"
    if wants_gpu and device.accelerator is None:
        logger.warning(
            "no GPU found: this worker runs on the CPU although SCREEN_DEVICE=%s and SCREEN_DTYPE_POLICY=%s ask for "
            "one (check the NVIDIA runtime and the backend's CUDA build)",
            settings.device,
            settings.dtype_policy,
        )


@app.task(
    name=SCREEN_CHUNK_TASK,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def screen_chunk_task(result_ids: list[int]) -> dict:
    return screen_chunk(runtime(), result_ids).as_dict()


# Acknowledged on receipt, unlike the chunks: a retrain that dies or overruns must not be redelivered and run
# again. The night is also claimed in the database, so even a duplicated message trains once.
@app.task(name=NIGHTLY_RETRAIN_TASK, bind=True, acks_late=False, reject_on_worker_lost=False)
def nightly_retrain_task(self) -> str:  # noqa: ANN001
    """What Celery beat runs each night: `screen retrain` with the active version's own training data."""
    from screening.training.retrain import nightly_retrain  # loads a backend: only in the process that trains

    return nightly_retrain(runtime().session_factory, runtime().settings, self.request.id)
