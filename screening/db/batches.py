"""Batches and their items: what one `screen enqueue` found, and which results cover it."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from screening.db.schema import Batch, BatchItem, Result, utcnow


def create_batch(session: Session, roots: list[str], model_version_id: int, mode: str) -> Batch:
    batch = Batch(id=uuid.uuid4().hex, roots=roots, model_version_id=model_version_id, mode=mode)
    session.add(batch)
    session.flush()
    return batch


def add_items(session: Session, batch_id: str, rows: list[dict]) -> list[BatchItem]:
    items = [BatchItem(batch_id=batch_id, **row) for row in rows]
    session.add_all(items)
    session.flush()
    return items


def finish_enqueue(session: Session, batch_id: str) -> None:
    session.execute(update(Batch).where(Batch.id == batch_id).values(enqueue_finished_at=utcnow()))


@dataclass(frozen=True)
class BatchProgress:
    batch_id: str
    total: int
    pending: int
    by_status: dict[str, int]
    reused: int
    studies: int
    enqueue_finished: bool

    @property
    def finished(self) -> bool:
        return self.enqueue_finished and self.pending == 0


def batch_progress(session: Session, batch_id: str) -> BatchProgress:
    batch = session.get_one(Batch, batch_id)
    rows = session.execute(
        select(BatchItem.enqueue_error, Result.batch_id, Result.status)
        .outerjoin(Result, Result.id == BatchItem.result_id)
        .where(BatchItem.batch_id == batch_id)
    ).all()
    statuses = Counter("failed" if error else status for error, _, status in rows)
    studies = session.scalar(
        select(func.count(func.distinct(BatchItem.study_uid))).where(BatchItem.batch_id == batch_id)
    )
    return BatchProgress(
        batch_id=batch_id,
        total=len(rows),
        pending=statuses.pop("queued", 0),
        by_status=dict(statuses),
        reused=sum(1 for error, claimed_by, _ in rows if not error and claimed_by != batch_id),
        studies=studies or 0,
        enqueue_finished=batch.enqueue_finished_at is not None,
    )


def latest_batch_id(session: Session) -> str | None:
    return session.scalar(select(Batch.id).order_by(Batch.created_at.desc()).limit(1))
