"""Record a batch of found files, claim the images its model version has no row for, dispatch those.

The enqueuing process holds a lease on its batch and renews it while it runs. If it dies (SIGTERM, a
broker that cannot be reached) after claiming images and before handing them on, its lease lapses
within seconds and the next enqueue or requeue that meets those images adopts and dispatches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import islice

from sqlalchemy.orm import Session, sessionmaker

from screening.db.batches import add_items, batch_progress, create_batch, finish_enqueue, renew_lease
from screening.db.leases import lapsed_results, mark_taken_over, renewing
from screening.db.registry import active_version
from screening.db.results import adopt_abandoned, claim_images, link_items, mark_dispatched, queued_claims
from screening.db.schema import Batch
from screening.queue.discover import FoundFile, discover
from screening.vocabulary import BatchMode, Population

Dispatch = Callable[[list[int]], None]  # receives result ids to screen
SessionFactory = sessionmaker[Session]


def _chunks(found: Iterable[FoundFile], size: int) -> Iterator[list[FoundFile]]:
    iterator = iter(found)
    while chunk := list(islice(iterator, size)):
        yield chunk


def start_batch(
    session_factory: SessionFactory,
    roots: list[str],
    mode: BatchMode,
    lease: timedelta,
    population: Population | None = None,
) -> str:
    """A batch is screened by the version active now; a later promotion applies to later batches. `population`:
    of its images whose header gives no age."""
    with session_factory.begin() as session:
        return create_batch(session, roots, active_version(session).id, mode, lease, population).id


@contextmanager
def held_lease(session_factory: SessionFactory, batch_id: str, lease: timedelta) -> Iterator[None]:
    """Renew the batch's lease every third of its length while the block runs."""
    with renewing(
        session_factory,
        lease.total_seconds() / 3,
        lambda session: renew_lease(session, batch_id, lease),
        name=f"lease-{batch_id[:8]}",
    ):
        yield


def _dispatch(session_factory: SessionFactory, dispatch: Dispatch, result_ids: list[int], chunk_size: int) -> None:
    """Hand the ids on in chunks; each chunk is marked dispatched once `dispatch` returned."""
    for start in range(0, len(result_ids), chunk_size):
        chunk = result_ids[start : start + chunk_size]
        dispatch(chunk)
        with session_factory.begin() as session:
            mark_dispatched(session, chunk)


def enqueue_batch(
    session_factory: SessionFactory,
    batch_id: str,
    roots: list[str],
    chunk_size: int,
    max_file_bytes: int,
    dispatch: Dispatch,
    stale_after: timedelta,
    on_files: Callable[[int], None] = lambda n: None,
    recorded: frozenset[str] = frozenset(),
) -> None:
    """Record every file under `roots` (but those `recorded` already: an interrupted enqueue resumed); dispatch the
    images that no batch has claimed for this version."""
    for chunk in _chunks(discover(roots, max_file_bytes, recorded), chunk_size):
        with session_factory.begin() as session:
            version_id = session.get_one(Batch, batch_id).model_version_id
            items = add_items(session, batch_id, [found.as_row() for found in chunk])
            readable = [item for item in items if item.enqueue_error is None]
            claimed = claim_images(session, version_id, batch_id, readable, stale_after)
            link_items(session, version_id, readable)
        _dispatch(session_factory, dispatch, claimed, chunk_size)  # after the commit: a worker finds the rows
        on_files(len(chunk))
    adopt_and_dispatch(session_factory, batch_id, chunk_size, dispatch)
    with session_factory.begin() as session:
        finish_enqueue(session, batch_id)


def adopt_and_dispatch(session_factory: SessionFactory, batch_id: str, chunk_size: int, dispatch: Dispatch) -> int:
    """Dispatch the images of this batch that a dead process claimed and never handed on; return how many."""
    with session_factory.begin() as session:
        adopted = adopt_abandoned(session, batch_id)
    _dispatch(session_factory, dispatch, adopted, chunk_size)
    return len(adopted)


def dispatch_lapsed(session_factory: SessionFactory, dispatch: Dispatch, chunk_size: int) -> list[int]:
    """Dispatch again the queued rows (of any batch) whose holder stopped renewing its lease: a worker that died
    with them reserved or half screened. Returns them; whoever notices first does it, and a row a quick worker
    claimed meanwhile is left to it."""
    with session_factory() as session:
        by_version = lapsed_results(session)
    for result_ids in by_version.values():  # a chunk is screened by one version
        for start in range(0, len(result_ids), chunk_size):
            chunk = result_ids[start : start + chunk_size]
            dispatch(chunk)
            with session_factory.begin() as session:
                mark_taken_over(session, chunk)
                mark_dispatched(session, chunk)
    return [result_id for result_ids in by_version.values() for result_id in result_ids]


def wait_for_batch(
    session_factory: SessionFactory,
    batch_id: str,
    chunk_size: int,
    dispatch: Dispatch,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    poll_s: float = 1.0,
) -> None:
    """Until every file of the batch has an outcome, adopting images whose claimer died on the way."""
    while True:
        adopt_and_dispatch(session_factory, batch_id, chunk_size, dispatch)
        dispatch_lapsed(session_factory, dispatch, chunk_size)
        with session_factory() as session:
            progress = batch_progress(session, batch_id)
        on_progress(progress.total - progress.pending, progress.total)
        if progress.finished:
            return
        time.sleep(poll_s)


def requeue_batch(session_factory: SessionFactory, batch_id: str, chunk_size: int, dispatch: Dispatch) -> int:
    """Dispatch again every image the batch claimed and nobody screened (messages lost with a broker).

    Safe to run at any time: a worker leaves rows that are already filled in alone."""
    lapsed = set(dispatch_lapsed(session_factory, dispatch, chunk_size))
    with session_factory() as session:
        claimed = [result_id for result_id in queued_claims(session, batch_id) if result_id not in lapsed]
    _dispatch(session_factory, dispatch, claimed, chunk_size)
    return len(lapsed) + len(claimed) + adopt_and_dispatch(session_factory, batch_id, chunk_size, dispatch)
