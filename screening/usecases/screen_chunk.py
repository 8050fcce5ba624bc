"""Screen a chunk: the Celery task's use case, and what `screen enqueue` runs in-process without a broker.

Idempotent, as a task acknowledged late must be: rows already filled in (a redelivered chunk) are
left alone, and each row is written once.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache

from screening.config import Settings
from screening.db.batches import population_overrides
from screening.db.results import queued_results, record_outcomes
from screening.db.schema import ImageStatus, ModelVersion
from screening.usecases.context import Services, connect
from screening.worker.chunk import WorkerRuntime, score_jobs
from screening.worker.stages import ImageJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkSummary:
    model_version_id: int | None
    items: int
    already_screened: int
    statuses: dict[ImageStatus, int]
    elapsed_ms: float = 0.0
    write_ms: float = 0.0

    def as_dict(self) -> dict:
        """PHI-free: Celery logs a task's return value."""
        return asdict(self)


def worker_runtime(settings: Settings) -> WorkerRuntime:
    """What a worker process keeps between chunks, made after the fork (database connections of its own)."""
    return WorkerRuntime(settings, connect(settings).sessions)


@lru_cache(maxsize=2)
def process_runtime(services: Services) -> WorkerRuntime:
    """The runtime of a process that screens and explains by itself (`screen enqueue` without a broker, `screen
    listen`, `screen serve`): one loaded model, however many batches and heatmaps it serves."""
    return WorkerRuntime(services.settings, services.sessions)


def screen_chunk(runtime: WorkerRuntime, result_ids: list[int]) -> ChunkSummary:
    """Screen the queued result rows `result_ids` with the version they were claimed for."""
    started = time.perf_counter()
    with runtime.session_factory() as session:
        queued = queued_results(session, result_ids)
        if not queued:
            return ChunkSummary(None, len(result_ids), len(result_ids), {})
        version = session.get_one(ModelVersion, queued[0].model_version_id)  # claimed together: one version
        overrides = population_overrides(session, {row.batch_id for row in queued})
    jobs = [ImageJob(row.path, row.sha256, row.id, overrides.get(row.batch_id or "")) for row in queued]
    score_jobs(runtime, version, jobs)
    writing = time.perf_counter()
    with runtime.session_factory.begin() as session:
        record_outcomes(session, [job.outcome() for job in jobs])
    finished = time.perf_counter()
    return ChunkSummary(
        version.id,
        len(result_ids),
        len(result_ids) - len(queued),
        dict(Counter(job.status for job in jobs if job.status is not None)),
        elapsed_ms=round((finished - started) * 1000, 1),
        write_ms=round((finished - writing) * 1000, 1),
    )


def announce_worker_process(settings: Settings) -> None:
    """Log the backend and device this process computes on; a GPU asked for and not found is a warning."""
    from screening.model.device import current_device

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
