"""The DICOM results of screened studies and their sending: recorded, made again or sent again with back-off, never
in a loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from screening.db.schema import OutboxObject, utcnow
from screening.vocabulary import ResultKind, SendStatus


@dataclass(frozen=True)
class MadeObject:
    """An object made for a study (written to `path`), or the reason it could not be made."""

    study_uid: str
    kind: ResultKind
    source_sop_uid: str  # the image of a heatmap; "" for a report
    sop_uid: str
    path: Path | None
    notes: list[str]  # header values left out of it, by attribute name
    error: str | None = None
    covers: list[int] = field(default_factory=list)  # the result ids it was made from


@dataclass(frozen=True)
class Retries:
    """How often an object is tried (made, then sent) and how long to wait between tries."""

    max_attempts: int
    backoff: timedelta  # the wait before try n + 1 is backoff * 2 ** (n - 1)


def record_object(
    session: Session, batch_id: str, made: MadeObject, destination: str | None, retries: Retries
) -> OutboxObject:
    """Pending: due now when there is somewhere to send it; when it could not be made, made again after the
    back-off (its reason kept), failed once the attempts are spent."""
    result = OutboxObject(
        batch_id=batch_id,
        study_uid=made.study_uid,
        kind=made.kind,
        source_sop_uid=made.source_sop_uid,
        sop_uid=made.sop_uid,
        path="",
        destination=destination,
        status=SendStatus.PENDING,
        attempts=0,
        covers=sorted(made.covers),
    )
    session.add(result)
    return _record_made(session, result, made, retries)


def _record_made(session: Session, result: OutboxObject, made: MadeObject, retries: Retries) -> OutboxObject:
    """What one try at making `result` gave: its file, due to be sent (when there is a destination); or a failed
    attempt."""
    if made.error:
        return record_attempt(session, result, made.error, retries)
    result.sop_uid, result.path, result.notes = made.sop_uid, str(made.path), "; ".join(made.notes) or None
    result.covers, result.attempts, result.last_error = sorted(made.covers), 0, None
    result.status, result.next_attempt_at = SendStatus.PENDING, utcnow() if result.destination else None
    session.flush()
    return result


def record_remade(
    session: Session, batch_id: str, study_uid: str, made: list[MadeObject], retries: Retries
) -> list[OutboxObject]:
    """Another try at a study's objects of a batch that could not be made: each object made again fills its row
    (or is a new row: a heatmap its report's headers kept from being tried); one that another process made
    meanwhile is dropped; an unmade row no longer needed (a later report of the study covers it) is superseded."""
    rows = {
        (row.kind, row.source_sop_uid): row
        for row in session.scalars(
            select(OutboxObject).where(OutboxObject.batch_id == batch_id, OutboxObject.study_uid == study_uid)
        )
    }
    destination = next((row.destination for row in rows.values()), None)
    touched = []
    for one in made:
        row = rows.pop((one.kind, one.source_sop_uid), None)
        if row is None:
            touched.append(record_object(session, batch_id, one, destination, retries))
        elif row.path:  # made by another process meanwhile
            if one.path:
                one.path.unlink(missing_ok=True)
        else:
            touched.append(_record_made(session, row, one, retries))
    for row in rows.values():
        if not row.path:
            row.status, row.next_attempt_at = SendStatus.SUPERSEDED, None
            row.lease_holder, row.lease_expires_at = None, None
            touched.append(row)
    session.flush()
    return touched


def _with_a_next_step() -> ColumnElement[bool]:
    """Objects with somewhere to go, or not made yet: an attempt can send or make them."""
    return or_(OutboxObject.destination.is_not(None), OutboxObject.path == "")


def to_try() -> ColumnElement[bool]:
    """Pending objects with a next attempt: to send, or to make again."""
    return and_(OutboxObject.status == SendStatus.PENDING, _with_a_next_step())


def due_objects(session: Session, now: datetime | None = None) -> list[OutboxObject]:
    """Pending objects whose next attempt (to send, or to make again) is due."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(OutboxObject)
            .where(to_try())
            .where(or_(OutboxObject.next_attempt_at.is_(None), OutboxObject.next_attempt_at <= now))
            .order_by(OutboxObject.id)
        )
    )


def record_attempt(session: Session, result: OutboxObject, error: str | None, retries: Retries) -> OutboxObject:
    """One attempt's outcome: sent; or failed for good after `retries.max_attempts`; or pending with the next
    attempt `backoff * 2 ** (attempts - 1)` from now."""
    result.attempts += 1
    result.lease_holder, result.lease_expires_at = None, None
    if error is None:
        result.status, result.sent_at, result.last_error, result.next_attempt_at = SendStatus.SENT, utcnow(), None, None
    elif result.attempts >= retries.max_attempts:
        result.status, result.last_error, result.next_attempt_at = SendStatus.FAILED, error, None
    else:
        result.last_error = error
        result.next_attempt_at = utcnow() + retries.backoff * 2 ** (result.attempts - 1)
    session.flush()
    return result


def outbox(session: Session, statuses: tuple[SendStatus, ...] | None = None) -> list[OutboxObject]:
    query = select(OutboxObject).order_by(OutboxObject.id)
    if statuses:
        query = query.where(OutboxObject.status.in_(statuses))
    return list(session.scalars(query))


def resend(session: Session, object_ids: list[int] | None = None) -> list[OutboxObject]:
    """Failed objects (or the ones named) back to pending with a fresh count of attempts: to send, or to make."""
    query = select(OutboxObject).where(_with_a_next_step())
    query = (
        query.where(OutboxObject.id.in_(object_ids))
        if object_ids
        else query.where(OutboxObject.status == SendStatus.FAILED)
    )
    objects = list(session.scalars(query))
    for result in objects:
        result.status, result.attempts, result.next_attempt_at = SendStatus.PENDING, 0, utcnow()
        result.lease_holder, result.lease_expires_at = None, None
    session.flush()
    return objects


def objects_of_batch(session: Session, batch_id: str) -> list[OutboxObject]:
    return list(session.scalars(select(OutboxObject).where(OutboxObject.batch_id == batch_id)))


def made_for_study(session: Session, study_uid: str) -> list[OutboxObject]:
    """The objects made for a study so far (not those that could not be made), oldest first."""
    query = select(OutboxObject).where(OutboxObject.study_uid == study_uid, OutboxObject.path != "")
    return list(session.scalars(query.order_by(OutboxObject.id)))
