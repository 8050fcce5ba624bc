"""Batches and their items: what one `screen enqueue` found, and which results cover it."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from screening.db.leases import StrandedWork, stranded_work
from screening.db.schema import Batch, BatchItem, Result, utcnow
from screening.vocabulary import BatchMode, ImageStatus, Population


def create_batch(
    session: Session,
    roots: list[str],
    model_version_id: int,
    mode: BatchMode,
    lease: timedelta = timedelta(seconds=30),
    population: Population | None = None,
) -> Batch:
    batch = Batch(
        id=uuid.uuid4().hex,
        roots=roots,
        model_version_id=model_version_id,
        mode=mode,
        lease_expires_at=utcnow() + lease,
        population=population,
    )
    session.add(batch)
    session.flush()
    return batch


def population_overrides(session: Session, batch_ids: set[str | None]) -> dict[str, Population]:
    """The `--population` of each of these batches that was given one."""
    rows = session.execute(select(Batch.id, Batch.population).where(Batch.id.in_([b for b in batch_ids if b])))
    return {batch_id: population for batch_id, population in rows if population is not None}


def renew_lease(session: Session, batch_id: str, lease: timedelta) -> None:
    """The claiming process is alive: nobody may adopt what it claimed for another `lease`."""
    session.execute(update(Batch).where(Batch.id == batch_id).values(lease_expires_at=utcnow() + lease))


def add_items(session: Session, batch_id: str, rows: list[dict]) -> list[BatchItem]:
    items = [BatchItem(batch_id=batch_id, **row) for row in rows]
    session.add_all(items)
    session.flush()
    return items


def recorded_paths(session: Session, batch_id: str) -> frozenset[str]:
    """The files a batch has recorded so far."""
    return frozenset(session.scalars(select(BatchItem.path).where(BatchItem.batch_id == batch_id)))


def finish_enqueue(session: Session, batch_id: str) -> None:
    session.execute(update(Batch).where(Batch.id == batch_id).values(enqueue_finished_at=utcnow()))


class BatchState(StrEnum):
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # its enqueue stopped before it had recorded and dispatched every file
    IN_PROGRESS = "in progress"


@dataclass(frozen=True)
class BatchProgress:
    batch_id: str
    total: int
    pending: int
    by_status: dict[ImageStatus, int]
    reused: int
    studies: int
    enqueue_finished: bool
    lease_lapsed: bool
    stranded: tuple[StrandedWork, ...] = ()  # images a process that died held, taken over or waiting to be

    @property
    def finished(self) -> bool:
        return self.enqueue_finished and self.pending == 0

    @property
    def interrupted(self) -> bool:
        """The enqueue process stopped (killed, or its broker failed) before it had recorded and dispatched all."""
        return not self.enqueue_finished and self.lease_lapsed

    @property
    def state(self) -> BatchState:
        if self.finished:
            return BatchState.FINISHED
        if self.interrupted:
            return BatchState.INTERRUPTED
        return BatchState.IN_PROGRESS


def batch_progress(session: Session, batch_id: str) -> BatchProgress:
    batch = session.get_one(Batch, batch_id)
    rows = session.execute(
        select(BatchItem.enqueue_error, BatchItem.enqueue_status, Result.batch_id, Result.status)
        .outerjoin(Result, Result.id == BatchItem.result_id)
        .where(BatchItem.batch_id == batch_id)
    ).all()
    statuses: Counter[str | None] = Counter(
        (enqueue_status or ImageStatus.FAILED) if error else status for error, enqueue_status, _, status in rows
    )
    studies = session.scalar(
        select(func.count(func.distinct(BatchItem.study_uid))).where(BatchItem.batch_id == batch_id)
    )
    return BatchProgress(
        batch_id=batch_id,
        total=len(rows),
        pending=statuses.pop(ImageStatus.QUEUED, 0) + statuses.pop(None, 0),  # None: not linked to a row yet
        by_status={ImageStatus(status): count for status, count in statuses.items() if status is not None},
        reused=sum(1 for error, _, claimed_by, _ in rows if not error and claimed_by != batch_id),
        studies=studies or 0,
        enqueue_finished=batch.enqueue_finished_at is not None,
        lease_lapsed=batch.lease_expires_at is not None and aware(batch.lease_expires_at) < utcnow(),
        stranded=tuple(stranded_work(session, batch_id)),
    )


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latest_batch_id(session: Session) -> str | None:
    return session.scalar(select(Batch.id).order_by(Batch.created_at.desc()).limit(1))


def latest_batches(session: Session, limit: int) -> list[Batch]:
    return list(session.scalars(select(Batch).order_by(Batch.created_at.desc()).limit(limit)))


def batches_starting_with(session: Session, prefix: str) -> list[str]:
    """The ids that start with `prefix` (two at most: enough to tell one from several)."""
    query = select(Batch.id).where(Batch.id.startswith(prefix, autoescape=True)).limit(2)
    return list(session.scalars(query))
