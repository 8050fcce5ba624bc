"""The DICOM results of screened studies and their sending: recorded, retried with back-off, never in a loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from screening.db.schema import ResultKind, ResultObject, SendStatus, utcnow


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


def record_object(session: Session, batch_id: str, made: MadeObject, destination: str | None) -> ResultObject:
    """Pending when there is somewhere to send it; failed at once (with its reason) when it could not be made."""
    result = ResultObject(
        batch_id=batch_id,
        study_uid=made.study_uid,
        kind=made.kind,
        source_sop_uid=made.source_sop_uid,
        sop_uid=made.sop_uid,
        path=str(made.path or ""),
        destination=destination,
        status=SendStatus.FAILED if made.error else SendStatus.PENDING,
        attempts=0,
        last_error=made.error,
        notes="; ".join(made.notes) or None,
        covers=sorted(made.covers),
        next_attempt_at=utcnow() if destination and not made.error else None,
    )
    session.add(result)
    session.flush()
    return result


def due_objects(session: Session, now: datetime | None = None) -> list[ResultObject]:
    """Pending objects with a destination whose next attempt is due."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(ResultObject)
            .where(ResultObject.status == SendStatus.PENDING, ResultObject.destination.is_not(None))
            .where(or_(ResultObject.next_attempt_at.is_(None), ResultObject.next_attempt_at <= now))
            .order_by(ResultObject.id)
        )
    )


def record_attempt(
    session: Session, result: ResultObject, error: str | None, max_attempts: int, backoff: timedelta
) -> ResultObject:
    """One send attempt's outcome: sent; or failed for good after `max_attempts`; or pending with the next attempt
    `backoff * 2 ** (attempts - 1)` from now."""
    result.attempts += 1
    result.lease_holder, result.lease_expires_at = None, None
    if error is None:
        result.status, result.sent_at, result.last_error, result.next_attempt_at = SendStatus.SENT, utcnow(), None, None
    elif result.attempts >= max_attempts:
        result.status, result.last_error, result.next_attempt_at = SendStatus.FAILED, error, None
    else:
        result.last_error = error
        result.next_attempt_at = utcnow() + backoff * 2 ** (result.attempts - 1)
    session.flush()
    return result


def outbox(session: Session, statuses: tuple[SendStatus, ...] | None = None) -> list[ResultObject]:
    query = select(ResultObject).order_by(ResultObject.id)
    if statuses:
        query = query.where(ResultObject.status.in_(statuses))
    return list(session.scalars(query))


def resend(session: Session, object_ids: list[int] | None = None) -> list[ResultObject]:
    """Failed objects (or the ones named) back to pending with a fresh count of attempts."""
    query = select(ResultObject).where(ResultObject.destination.is_not(None))
    query = (
        query.where(ResultObject.id.in_(object_ids))
        if object_ids
        else query.where(ResultObject.status == SendStatus.FAILED)
    )
    objects = list(session.scalars(query))
    for result in objects:
        result.status, result.attempts, result.next_attempt_at = SendStatus.PENDING, 0, utcnow()
        result.lease_holder, result.lease_expires_at = None, None
    session.flush()
    return objects


def objects_of_batch(session: Session, batch_id: str) -> list[ResultObject]:
    return list(session.scalars(select(ResultObject).where(ResultObject.batch_id == batch_id)))


def made_for_study(session: Session, study_uid: str) -> list[ResultObject]:
    """The objects made for a study so far (not those that could not be made), oldest first."""
    query = select(ResultObject).where(ResultObject.study_uid == study_uid, ResultObject.path != "")
    return list(session.scalars(query.order_by(ResultObject.id)))
