"""What the review page lists: screened images across batches, flagged first, with their labels and sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from screening.db.schema import BatchItem, Label, ModelVersion, OutboxObject, Result
from screening.vocabulary import ImageStatus, SendStatus, WorklistView


@dataclass(frozen=True)
class ReviewRow:
    result_id: int
    batch_id: str | None
    file_name: str
    study_uid: str | None
    status: ImageStatus
    probability: float | None
    flagged: bool | None
    reason: str | None
    model_version: str  # "id:name"
    model_version_id: int
    screened_at: datetime | None
    verdict: bool | None  # the radiologist's label (pneumonia?), None when not read yet
    sop_uid: str | None = None  # a DICOM instance's: a re-received instance is another row, not another image


@dataclass(frozen=True)
class WorklistFilter:
    """Which screened images a worklist shows: any combination, each part optional."""

    batch_id: str | None = None
    day: date | None = None  # screened on this UTC day
    status: ImageStatus | None = None
    view: WorklistView | None = None


EVERYTHING = WorklistFilter()


def _filtered(query: Select, chosen: WorklistFilter, result_id: int | None = None) -> Select:
    query = query.where(Result.status != ImageStatus.QUEUED)
    if chosen.batch_id:
        query = query.where(Result.batch_id == chosen.batch_id)
    if chosen.day:
        start = datetime.combine(chosen.day, time.min)
        query = query.where(Result.screened_at >= start, Result.screened_at < start + timedelta(days=1))
    if chosen.status:
        query = query.where(Result.status == chosen.status)
    if chosen.view == WorklistView.FLAGGED_UNREAD:
        query = query.where(Result.flagged.is_(True), Label.pneumonia.is_(None))
    elif chosen.view == WorklistView.NOT_SCORED:
        query = query.where(Result.status.in_((ImageStatus.SKIPPED, ImageStatus.FAILED)))
    if result_id is not None:
        query = query.where(Result.id == result_id)
    return query


# flagged first, then by probability (highest first), then the unscored, then as they came
WORKLIST_ORDER = (Result.flagged.desc().nulls_last(), Result.probability.desc().nulls_last(), Result.id)


def review_rows(
    session: Session,
    chosen: WorklistFilter = EVERYTHING,
    limit: int = 100,
    offset: int = 0,
    result_id: int | None = None,
) -> list[ReviewRow]:
    """Images flagged first, then by probability (highest first), then the unscored; `limit` of them from
    `offset` on."""
    query = (
        select(Result, ModelVersion.name, Label.pneumonia)
        .join(ModelVersion, ModelVersion.id == Result.model_version_id)
        .outerjoin(Label, Label.sha256 == Result.sha256)
    )
    query = _filtered(query, chosen, result_id)
    query = query.order_by(*WORKLIST_ORDER)
    return [
        ReviewRow(
            result.id,
            result.batch_id,
            result.path.rsplit("/", 1)[-1],
            result.study_uid,
            ImageStatus(result.status),
            result.probability,
            result.flagged,
            result.reason,
            f"{result.model_version_id}:{name}",
            result.model_version_id,
            result.screened_at,
            verdict,
            result.sop_uid,
        )
        for result, name, verdict in session.execute(query.limit(limit).offset(offset))
    ]


def neighbours(session: Session, result_id: int) -> tuple[int | None, int | None]:
    """The images just before and just after one in the whole worklist's order."""
    previous = func.lag(Result.id).over(order_by=WORKLIST_ORDER).label("previous")
    following = func.lead(Result.id).over(order_by=WORKLIST_ORDER).label("following")
    ordered = _filtered(select(Result.id, previous, following), EVERYTHING).subquery()
    found = session.execute(select(ordered.c.previous, ordered.c.following).where(ordered.c.id == result_id)).first()
    return (found.previous, found.following) if found else (None, None)


def count_rows(session: Session, chosen: WorklistFilter) -> int:
    """How many images the filter selects in all (the worklist shows a page of them)."""
    query = select(func.count(Result.id)).outerjoin(Label, Label.sha256 == Result.sha256)
    return int(session.scalar(_filtered(query, chosen)) or 0)


@dataclass(frozen=True)
class StudyIdentifiers:
    """How a reading room names a study: from its DICOM header, as its newest file recorded it."""

    patient_id: str | None
    accession: str | None
    study_date: date | None


def study_identifiers(session: Session, study_uids: list[str]) -> dict[str, StudyIdentifiers]:
    found: dict[str, StudyIdentifiers] = {}
    rows = session.execute(
        select(BatchItem.study_uid, BatchItem.patient_id, BatchItem.accession, BatchItem.study_date)
        .where(BatchItem.study_uid.in_(study_uids))
        .order_by(BatchItem.id.desc())
    )
    for uid, patient_id, accession, study_date in rows:
        if uid:
            found.setdefault(uid, StudyIdentifiers(patient_id, accession, study_date))
    return found


def study_sends(session: Session, study_uid: str) -> list[tuple[str, SendStatus, int, str | None]]:
    """(kind, status, attempts, last error) of each DICOM result made for a study."""
    rows = session.execute(
        select(OutboxObject.kind, OutboxObject.status, OutboxObject.attempts, OutboxObject.last_error)
        .where(OutboxObject.study_uid == study_uid)
        .order_by(OutboxObject.id)
    )
    return [(kind, SendStatus(status), attempts, error) for kind, status, attempts, error in rows]
