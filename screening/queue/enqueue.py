"""Record a batch of found files, claim the images its model version has no row for, dispatch those."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from itertools import islice

from sqlalchemy.orm import Session, sessionmaker

from screening.db.batches import add_items, create_batch, finish_enqueue
from screening.db.registry import active_version
from screening.db.results import claim_images, link_items, queued_claims
from screening.db.schema import Batch
from screening.queue.discover import FoundFile, discover

Dispatch = Callable[[list[int]], None]  # receives result ids to screen


def _chunks(found: Iterable[FoundFile], size: int) -> Iterator[list[FoundFile]]:
    iterator = iter(found)
    while chunk := list(islice(iterator, size)):
        yield chunk


def start_batch(session_factory: sessionmaker[Session], roots: list[str], mode: str) -> str:
    """A batch is screened by the version active now; a later promotion applies to later batches."""
    with session_factory.begin() as session:
        return create_batch(session, roots, active_version(session).id, mode).id


def enqueue_batch(
    session_factory: sessionmaker[Session],
    batch_id: str,
    roots: list[str],
    chunk_size: int,
    dispatch: Dispatch,
    stale_after: timedelta,
    on_files: Callable[[int], None] = lambda n: None,
) -> None:
    """Record every file under `roots`; dispatch the images that no batch has claimed for this version."""
    for chunk in _chunks(discover(roots), chunk_size):
        with session_factory.begin() as session:
            version_id = session.get_one(Batch, batch_id).model_version_id
            items = add_items(session, batch_id, [found.as_row() for found in chunk])
            readable = [item for item in items if item.enqueue_error is None]
            claimed = claim_images(session, version_id, batch_id, readable, stale_after)
            link_items(session, version_id, readable)
        if claimed:  # after the commit, so a worker always finds the rows
            dispatch(claimed)
        on_files(len(chunk))
    with session_factory.begin() as session:
        finish_enqueue(session, batch_id)


def requeue_batch(session_factory: sessionmaker[Session], batch_id: str, chunk_size: int, dispatch: Dispatch) -> int:
    """Dispatch again every image the batch claimed and nobody screened (messages lost with a broker).

    Safe to run at any time: a worker leaves rows that are already filled in alone."""
    with session_factory() as session:
        claimed = queued_claims(session, batch_id)
    for start in range(0, len(claimed), chunk_size):
        dispatch(claimed[start : start + chunk_size])
    return len(claimed)
