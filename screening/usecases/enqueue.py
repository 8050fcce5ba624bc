"""Enqueue folders, and requeue what a batch claimed and nobody screened.

With a broker the images go to the Celery workers; without one they are screened in this process,
through the same chunk function the workers run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kombu.exceptions import OperationalError as KombuOperationalError

from screening.db.batches import BatchProgress, batch_progress, recorded_paths, renew_lease
from screening.db.schema import Batch
from screening.errors import Conflict, InvalidRequest, Unavailable
from screening.queue.discover import walk
from screening.queue.enqueue import Dispatch, enqueue_batch, held_lease, requeue_batch, start_batch, wait_for_batch
from screening.usecases.context import Services, servable_active_model
from screening.usecases.results import find_batch
from screening.vocabulary import BatchMode, ImageStatus, Population

__all__ = ["BatchOutcome", "EnqueueEvents", "batch_mode", "enqueue_folders", "requeue"]


class BrokerUnreachable(Unavailable):
    pass


class StillRunning(Conflict):
    pass


@dataclass(frozen=True)
class EnqueueEvents:
    """How a caller follows an enqueue (the CLI draws progress bars); each defaults to nothing."""

    counted: Callable[[int], None] = lambda files: None  # before anything is read: how many files there are
    started: Callable[[str, int, str], None] = lambda batch_id, version_id, version_name: None
    files_found: Callable[[int], None] = lambda count: None
    screened: Callable[[int, int], None] = lambda done, total: None


@dataclass(frozen=True)
class BatchOutcome:
    progress: BatchProgress

    @property
    def failed(self) -> int:
        """Files of a finished batch that failed: the caller exits non-zero for them."""
        return self.progress.by_status.get(ImageStatus.FAILED, 0) if self.progress.finished else 0


def batch_mode(services: Services) -> BatchMode:
    return BatchMode.CELERY if services.settings.distributed else BatchMode.IN_PROCESS


def dispatcher(services: Services) -> Dispatch:
    if services.settings.distributed:
        from screening.queue.celery_app import SCREEN_CHUNK_TASK, app

        def send(result_ids: list[int]) -> None:
            app.send_task(SCREEN_CHUNK_TASK, args=[result_ids], argsrepr=f"[{len(result_ids)} images]")

        return send
    from screening.usecases.screen_chunk import process_runtime, screen_chunk

    runtime = process_runtime(services)

    def screen_here(result_ids: list[int]) -> None:
        screen_chunk(runtime, result_ids)

    return screen_here


@contextmanager
def _broker_errors(batch_id: str) -> Iterator[None]:
    try:
        yield
    except KombuOperationalError as problem:
        raise BrokerUnreachable(
            f"the broker could not be reached ({problem}); batch {batch_id} is recorded: "
            f"run `screen requeue {batch_id}` once the broker is back"
        ) from None


def enqueue_folders(
    services: Services,
    paths: list[Path],
    wait: bool = False,
    events: EnqueueEvents = EnqueueEvents(),
    population: Population | None = None,
) -> BatchOutcome:
    """Record a batch of every file under `paths` and have its images screened by the active version; `population`
    (a folder of known population) decides the operating point of each image whose header gives no age.

    Without a broker this always waits; with one, only when `wait`."""
    settings = services.settings
    version = servable_active_model(services)
    if population is not None and not version.per_population:
        raise InvalidRequest(
            f"the active model version {version.id} has one operating point for every image: --population would "
            "change nothing"
        )
    roots = distinct_roots(paths)
    files = sum(1 for _ in walk(roots))  # names only: a total for progress bars, before any file is read
    if not files:  # no batch for nothing: it would become the default of results and status
        raise InvalidRequest(f"no files under {', '.join(str(path) for path in paths)}: nothing to screen")
    events.counted(files)
    lease = timedelta(seconds=settings.enqueue_lease_s)
    batch_id = start_batch(services.sessions, roots, batch_mode(services), lease, population)
    events.started(batch_id, version.id, version.name)
    dispatch = dispatcher(services)
    with held_lease(services.sessions, batch_id, lease), _broker_errors(batch_id):
        enqueue_batch(
            services.sessions,
            batch_id,
            roots,
            settings.chunk_size,
            settings.image_limits.max_file_bytes,
            dispatch,
            stale_after=timedelta(seconds=settings.visibility_timeout_s),
            on_files=events.files_found,
        )
        if wait or not settings.distributed:
            wait_for_batch(services.sessions, batch_id, settings.chunk_size, dispatch, on_progress=events.screened)
    with services.sessions() as session:
        return BatchOutcome(batch_progress(session, batch_id))


def distinct_roots(paths: list[Path]) -> list[str]:
    """The folders and files given, each once: `a`, `a/` and `a/../a` are one root, and one inside another adds
    nothing (every file of the batch is found once)."""
    resolved = sorted({path.resolve() for path in paths}, key=lambda path: len(path.parts))
    kept: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(root) for root in kept):
            kept.append(path)
    return [str(path) for path in sorted(kept)]


@dataclass(frozen=True)
class Requeued:
    batch_id: str
    images: int  # claimed and never screened: dispatched again (or screened here)
    resumed_files: int  # files an interrupted enqueue had not reached, recorded now


def requeue(services: Services, batch_id: str | None) -> Requeued:
    """Dispatch again what a batch (default: the latest) claimed and nobody screened, and record the files an
    interrupted enqueue had not reached (so the batch finishes). Without a broker those images are screened here,
    unless a running enqueue still holds them."""
    settings = services.settings
    with services.sessions() as session:
        batch_id = find_batch(session, batch_id)
        progress = batch_progress(session, batch_id)
        roots, recorded = list(session.get_one(Batch, batch_id).roots), recorded_paths(session, batch_id)
    if not settings.distributed and not (progress.lease_lapsed or progress.enqueue_finished):
        raise StillRunning(f"batch {batch_id} is still being screened by a running `screen enqueue`")
    servable_active_model(services)
    lease = timedelta(seconds=settings.enqueue_lease_s)
    with services.sessions.begin() as session:
        renew_lease(session, batch_id, lease)  # this process now answers for the batch's claims
    dispatch, resumed = dispatcher(services), 0
    with held_lease(services.sessions, batch_id, lease), _broker_errors(batch_id):
        if progress.interrupted:

            def counted(files: int) -> None:
                nonlocal resumed
                resumed += files

            stale_after = timedelta(seconds=settings.visibility_timeout_s)
            max_bytes = settings.image_limits.max_file_bytes
            enqueue_batch(
                services.sessions,
                batch_id,
                roots,
                settings.chunk_size,
                max_bytes,
                dispatch,
                stale_after,
                counted,
                recorded,
            )
        images = requeue_batch(services.sessions, batch_id, settings.chunk_size, dispatch)
    return Requeued(batch_id, images, resumed)
