"""Record a batch of found files and hand what still needs screening to a dispatcher, chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from screening.db.batches import add_items, create_batch, finish_enqueue
from screening.db.registry import active_version
from screening.db.results import link_items
from screening.db.schema import BatchItem
from screening.queue.discover import FoundFile, discover

Dispatch = Callable[[list[int]], None]


def _chunks(found: Iterable[FoundFile], size: int) -> Iterator[list[FoundFile]]:
    iterator = iter(found)
    while chunk := list(islice(iterator, size)):
        yield chunk


def start_batch(session_factory: sessionmaker[Session], roots: list[str], mode: str) -> str:
    with session_factory.begin() as session:
        return create_batch(session, roots, active_version(session).id, mode).id


def enqueue_batch(
    session_factory: sessionmaker[Session],
    batch_id: str,
    roots: list[str],
    chunk_size: int,
    dispatch: Dispatch,
    on_files: Callable[[int], None] = lambda n: None,
) -> None:
    """Record every file under `roots`; dispatch item ids whose image this model has not screened yet."""
    for chunk in _chunks(discover(roots), chunk_size):
        with session_factory.begin() as session:
            version_id = active_version(session).id
            items = add_items(session, batch_id, [found.as_row() for found in chunk])
            readable = [item for item in items if item.enqueue_error is None]
            waiting = link_items(session, version_id, readable)
            reused = {item.id for item in readable} - {item.id for item in waiting}
            if reused:
                session.execute(update(BatchItem).where(BatchItem.id.in_(reused)).values(reused_result=True))
            waiting_ids = [item.id for item in waiting]
        if waiting_ids:
            dispatch(waiting_ids)
        on_files(len(chunk))
    with session_factory.begin() as session:
        finish_enqueue(session, batch_id)
