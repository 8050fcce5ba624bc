"""Screen a chunk: the Celery task's use case, and what `screen enqueue` runs in-process without a broker.

Idempotent, as a task acknowledged late must be: rows already filled in (a redelivered chunk) are
left alone, and each row is written once.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from screening.config import Settings
from screening.db.batches import population_overrides
from screening.db.leases import Holder, release_results, renew_results, renewing, take_results
from screening.db.results import queued_results, record_outcomes
from screening.db.schema import ModelVersion
from screening.model.registered import RegisteredVersion
from screening.usecases.context import Services, connect
from screening.vocabulary import ImageStatus
from screening.worker.chunk import WorkerRuntime as WorkerRuntime  # the Celery edge holds one per process
from screening.worker.chunk import score_jobs
from screening.worker.stages import ImageJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkSummary:
    model_version_id: int | None
    items: int
    already_screened: int
    statuses: dict[ImageStatus, int]
    held_elsewhere: int = 0  # still queued, under another screening's live lease: that one screens them
    elapsed_ms: float = 0.0
    write_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """PHI-free: Celery logs a task's return value."""
        return asdict(self)


def worker_runtime(settings: Settings, worker: Holder) -> WorkerRuntime:
    """What a worker process keeps between chunks, made after the fork (database connections of its own); the
    rows it screens are held under `worker`'s lease, which the worker's main process renews while it lives."""
    return WorkerRuntime(settings, connect(settings).sessions, worker)


@lru_cache(maxsize=2)
def process_runtime(services: Services) -> WorkerRuntime:
    """The runtime of a process that screens and explains by itself (`screen enqueue` without a broker, `screen
    listen`, `screen serve`): one loaded model, however many batches and heatmaps it serves."""
    holder = Holder.this_process(services.settings.in_process_lease)
    return WorkerRuntime(services.settings, services.sessions, holder)


def screen_chunk(runtime: WorkerRuntime, result_ids: list[int]) -> ChunkSummary:
    """Screen the queued result rows `result_ids` with the version they were claimed for; rows another screening
    holds under a live lease are left to it. The rows are held under a token of this call's, renewed every
    heartbeat while it runs, and freed again if it stops without writing them (to be retried)."""
    started = time.perf_counter()
    token = uuid.uuid4().hex
    with runtime.session_factory.begin() as session:
        taken = set(take_results(session, result_ids, runtime.holder, token))
        queued = queued_results(session, result_ids)
        mine = [row for row in queued if row.id in taken]
        if mine:
            version = RegisteredVersion.of(session.get_one(ModelVersion, mine[0].model_version_id))  # one version
            overrides = population_overrides(session, {row.batch_id for row in mine})
    already_screened, held_elsewhere = len(result_ids) - len(queued), len(queued) - len(mine)
    if not mine:
        return ChunkSummary(None, len(result_ids), already_screened, {}, held_elsewhere=held_elsewhere)
    jobs = [ImageJob(row.path, row.sha256, row.id, overrides.get(row.batch_id or "")) for row in mine]
    heartbeat = runtime.holder.heartbeat_s
    try:
        with renewing(
            runtime.session_factory, heartbeat, lambda s: renew_results(s, runtime.holder, token), f"chunk-{token[:8]}"
        ):
            score_jobs(runtime, version, jobs)
            writing = time.perf_counter()
            with runtime.session_factory.begin() as session:
                record_outcomes(session, [job.outcome() for job in jobs])
    except BaseException:
        _release(runtime, token)
        raise
    finished = time.perf_counter()
    _log_pace(jobs, finished - started, finished - writing)
    return ChunkSummary(
        version.id,
        len(result_ids),
        already_screened,
        dict(Counter(job.status for job in jobs if job.status is not None)),
        held_elsewhere=held_elsewhere,
        elapsed_ms=round((finished - started) * 1000, 1),
        write_ms=round((finished - writing) * 1000, 1),
    )


def _log_pace(jobs: list[ImageJob], elapsed_s: float, write_s: float) -> None:
    """One line per chunk: its pace and where the time went (per image; read, decode and preprocessing are thread
    time in the decode pool, overlapping inference)."""

    def mean_ms(stage: str) -> float:
        times = [job.timings_ms[stage] for job in jobs if stage in job.timings_ms]
        return sum(times) / len(times) if times else 0.0

    stages = ", ".join(f"{stage} {mean_ms(stage):.0f} ms" for stage in ("read", "decode", "preprocess", "infer"))
    logger.info(
        "chunk of %d image(s) in %.1f s: %.1f images/s; per image %s, write %.0f ms",
        len(jobs),
        elapsed_s,
        len(jobs) / max(elapsed_s, 1e-9),
        stages,
        write_s * 1000 / len(jobs),
    )


def _release(runtime: WorkerRuntime, token: str) -> None:
    """Free the rows of a screening that failed, so its retry may take them at once (if the database is away
    too, they are free once the lease lapses)."""
    try:
        with runtime.session_factory.begin() as session:
            release_results(session, token)
    except Exception:
        logger.warning("could not free the rows of a failed screening: they are free again once its lease lapses")


def announce_worker_process(settings: Settings) -> None:
    """Log the backend and device this process computes on; a GPU asked for and not found is a warning (half
    precision asks for one, but for bfloat16 on a CPU that computes it)."""
    from screening.model.device import cpu_computes_bfloat16, current_device

    device = current_device()
    logger.info("worker process %s: %s, dtype policy %s", os.getpid(), device.describe(), settings.dtype_policy)
    half_on_this_cpu = settings.dtype_policy == "mixed_bfloat16" and cpu_computes_bfloat16()
    wants_gpu = settings.device == "gpu" or (settings.dtype_policy != "float32" and not half_on_this_cpu)
    if wants_gpu and device.accelerator is None:
        logger.warning(
            "no GPU found: this worker runs on the CPU although SCREEN_DEVICE=%s and SCREEN_DTYPE_POLICY=%s ask for "
            "one (check the NVIDIA runtime and the backend's CUDA build)",
            settings.device,
            settings.dtype_policy,
        )
