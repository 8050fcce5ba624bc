"""Exactly one result row per image and model version: claimed at enqueue, filled in by a worker.

An image is its content (SHA-256). Claiming is an INSERT ... ON CONFLICT DO NOTHING RETURNING
id on the unique (sha256, version) key: of two batches that find the same image at the same
moment, exactly one gets the row back and dispatches it; the other links to it. A worker fills
a row only while it is still `queued`, so a redelivered chunk changes nothing.

A row whose last outcome was `failed` is claimed again by a later batch (the file may be fixed).
A row claimed by a process that died before handing it to a worker is adopted by the next batch
that finds it, as soon as the dead process's lease lapses. The same DICOM instance in other bytes
is its own row; the worker gives identical decoded pixels the score already computed for them,
and the study view counts each instance once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from screening.db.schema import (
    Batch,
    BatchItem,
    ModelVersion,
    OutboxObject,
    Result,
    study_instances,
    study_results,
    utcnow,
)
from screening.vocabulary import BatchMode, ImageStatus, Population, PopulationBasis


@dataclass(frozen=True)
class Outcome:
    """What a worker records for one result row."""

    result_id: int
    status: ImageStatus
    reason: str | None = None
    probability: float | None = None
    flagged: bool | None = None
    threshold: float | None = None
    population: Population | None = None
    population_basis: PopulationBasis | None = None
    adult_score: float | None = None
    kind: str | None = None
    pixel_sha256: str | None = None
    read_ms: float | None = None
    preprocess_ms: float | None = None
    infer_ms: float | None = None


OUTCOME_FIELDS = tuple(name for name in Outcome.__dataclass_fields__ if name != "result_id")
# what a scored row says of its image: the score, and the operating point it was compared with and why
SCORE_FIELDS = ("probability", "flagged", "threshold", "population", "population_basis", "adult_score")
# what a failed row queued again starts without: its outcome, and the lease of the screening that failed it (which
# would keep every worker off the row until it lapsed)
RESET_FIELDS = {
    name: None
    for name in (
        "reason",
        *SCORE_FIELDS,
        "pixel_sha256",
        "screened_at",
        "lease_holder",
        "lease_token",
        "lease_expires_at",
    )
}


def insert_ignoring_conflict(session: Session, table: type) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in this session's dialect (SQLite and PostgreSQL both have it)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def claim_images(
    session: Session, model_version_id: int, batch_id: str, items: list[BatchItem], stale_after: timedelta
) -> list[int]:
    """Create `queued` rows for images this version has no row for; return the ids to dispatch.

    Also claimed again: rows whose last outcome was `failed`, and rows still queued `stale_after` after
    they were dispatched (their message was lost)."""
    now = utcnow()
    fresh = {
        item.sha256: {
            "sha256": item.sha256,
            "path": item.path,
            "kind": item.kind,
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "sop_uid": item.sop_uid,
            "status": ImageStatus.QUEUED,
            "model_version_id": model_version_id,
            "batch_id": batch_id,
            "created_at": now,
        }
        for item in items
    }
    if not fresh:
        return []
    statement = insert_ignoring_conflict(session, Result).values(list(fresh.values()))
    claimed = list(session.scalars(statement.returning(Result.id)))
    this_version = and_(Result.model_version_id == model_version_id, Result.sha256.in_(list(fresh)))
    for sha256 in session.scalars(select(Result.sha256).where(this_version, Result.status == ImageStatus.FAILED)):
        claimed += session.scalars(
            update(Result)
            .where(Result.model_version_id == model_version_id, Result.sha256 == sha256)
            .where(Result.status == ImageStatus.FAILED)  # of two batches retrying it at once, one wins
            .values(status=ImageStatus.QUEUED, batch_id=batch_id, path=fresh[sha256]["path"], dispatched_at=None)
            .values(RESET_FIELDS)
            .returning(Result.id)
        )
    stale = session.scalars(
        update(Result)
        .where(this_version, Result.status == ImageStatus.QUEUED, Result.dispatched_at < now - stale_after)
        .values(dispatched_at=None)
        .returning(Result.id)
    )
    return claimed + list(stale)


def mark_dispatched(session: Session, result_ids: list[int]) -> None:
    """Handed to a worker (or screened in this process): from now on the broker, not the lease, keeps them."""
    session.execute(
        update(Result)
        .where(Result.id.in_(result_ids), Result.status == ImageStatus.QUEUED)
        .values(dispatched_at=utcnow())
    )


def adopt_abandoned(session: Session, batch_id: str) -> list[int]:
    """Take over the queued rows this batch's files link to whose claiming process is gone (its lease lapsed)
    before it handed them to a worker, or, in-process, before it screened them. Returns the ids to dispatch."""
    now = utcnow()
    lapsed = select(Batch.id).where(Batch.lease_expires_at < now, Batch.id != batch_id)
    lapsed_in_process = lapsed.where(Batch.mode == BatchMode.IN_PROCESS)
    linked = select(BatchItem.result_id).where(BatchItem.batch_id == batch_id, BatchItem.result_id.is_not(None))
    return list(
        session.scalars(
            update(Result)
            .where(Result.id.in_(linked), Result.status == ImageStatus.QUEUED)
            .where(
                or_(
                    Result.batch_id.in_(lapsed_in_process),
                    and_(Result.batch_id.in_(lapsed), Result.dispatched_at.is_(None)),
                )
            )
            .values(batch_id=batch_id, dispatched_at=None)
            .returning(Result.id)
        )
    )


def link_items(session: Session, model_version_id: int, items: list[BatchItem]) -> None:
    """Point each item at the row that covers its image (by content)."""
    rows = session.execute(
        select(Result.sha256, Result.id).where(
            Result.model_version_id == model_version_id, Result.sha256.in_([item.sha256 for item in items])
        )
    )
    by_content: dict[str | None, int] = {sha256: result_id for sha256, result_id in rows}
    for item in items:
        item.result_id = by_content[item.sha256]
    session.flush()


def record_outcomes(session: Session, outcomes: list[Outcome]) -> int:
    """Fill in queued rows; return how many changed (a redelivered chunk changes none)."""
    if not outcomes:
        return 0
    table = cast(Table, Result.__table__)
    statement = (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.status == ImageStatus.QUEUED)
        .values({field: bindparam(field) for field in (*OUTCOME_FIELDS, "screened_at")})
    )
    now = utcnow()
    parameters = [
        {"row_id": o.result_id, **{field: getattr(o, field) for field in OUTCOME_FIELDS}, "screened_at": now}
        for o in outcomes
    ]
    return session.connection().execute(statement, parameters).rowcount


def screened_pixels(session: Session, model_version_id: int, pixel_hashes: list[str]) -> dict[str, Result]:
    """Done rows of this version with these decoded pixels: identical pixels get one score, whatever the encoding."""
    done = session.scalars(
        select(Result).where(
            Result.model_version_id == model_version_id,
            Result.pixel_sha256.in_(pixel_hashes),
            Result.status == ImageStatus.DONE,
        )
    )
    return {result.pixel_sha256: result for result in done if result.pixel_sha256}


def queued_claims(session: Session, batch_id: str) -> list[int]:
    """Rows a batch claimed that no worker has filled in yet."""
    return list(
        session.scalars(
            select(Result.id)
            .where(Result.batch_id == batch_id, Result.status == ImageStatus.QUEUED)
            .order_by(Result.id)
        )
    )


def queued_results(session: Session, result_ids: list[int]) -> list[Result]:
    return list(session.scalars(select(Result).where(Result.id.in_(result_ids), Result.status == ImageStatus.QUEUED)))


@dataclass(frozen=True)
class ImageRow:
    """One file of a batch, whatever became of it."""

    path: str
    status: ImageStatus
    probability: float | None
    flagged: bool | None
    reason: str | None
    model_version: str | None  # "id:name"
    threshold: float | None  # of the operating point it was scored at
    population: Population | None  # whose operating point that is (None: the version has one for every image)
    population_basis: PopulationBasis | None  # why: header, override, estimate, or uncertain (the more sensitive)
    adult_score: float | None  # the age-group estimate's P(adult), where it was computed
    already_screened: bool  # scored by an earlier batch at the same version
    study_uid: str | None
    sop_uid: str | None
    sha256: str | None
    result_id: int | None = None  # None: the file never got a result row (refused when enqueued)


def batch_rows(session: Session, batch_id: str, flagged_only: bool = False) -> list[ImageRow]:
    """One row per file of the batch, whatever became of it."""
    query = (
        select(BatchItem, Result, ModelVersion.name)
        .outerjoin(Result, Result.id == BatchItem.result_id)
        .outerjoin(ModelVersion, ModelVersion.id == Result.model_version_id)
        .where(BatchItem.batch_id == batch_id)
        .order_by(BatchItem.id)
    )
    if flagged_only:
        query = query.where(Result.flagged.is_(True))
    return [_image_row(item, result, version_name, batch_id) for item, result, version_name in session.execute(query)]


def study_images(session: Session, study_uid: str, model_version_id: int) -> list[ImageRow]:
    """Every instance of a DICOM study screened at this version, whichever batch it came in (the study_instances
    view: each instance's latest result): what one report of the whole study covers."""
    screened = (
        select(study_instances.c.result_id)
        .where(study_instances.c.study_uid == study_uid, study_instances.c.model_version_id == model_version_id)
        .where(study_instances.c.status == ImageStatus.DONE, study_instances.c.probability.is_not(None))
    )
    query = (
        select(BatchItem, Result, ModelVersion.name)
        .join(Result, Result.id == BatchItem.result_id)
        .join(ModelVersion, ModelVersion.id == Result.model_version_id)
        .where(Result.id.in_(screened))
        .order_by(BatchItem.id)
    )
    latest = {result.id: (item, result, name) for item, result, name in session.execute(query)}  # its last item
    return [_image_row(item, result, name, item.batch_id) for item, result, name in latest.values()]


@dataclass(frozen=True)
class StudyInstance:
    """One instance of a study at a model version (the study_instances view)."""

    result_id: int
    study_uid: str
    model_version_id: int
    path: str
    status: ImageStatus
    probability: float | None
    flagged: bool | None


def instances_of_studies(session: Session, model_version_id: int, study_uids: list[str]) -> list[StudyInstance]:
    """The instances of these studies at this version, each once, highest probability first."""
    query = (
        select(study_instances)
        .where(study_instances.c.model_version_id == model_version_id, study_instances.c.study_uid.in_(study_uids))
        .order_by(study_instances.c.probability.desc().nulls_last(), study_instances.c.result_id)
    )
    return [
        StudyInstance(
            row.result_id,
            row.study_uid,
            row.model_version_id,
            row.path,
            ImageStatus(row.status),
            row.probability,
            None if row.flagged is None else bool(row.flagged),
        )
        for row in session.execute(query)
    ]


def _image_row(item: BatchItem, result: Result | None, version_name: str | None, batch_id: str) -> ImageRow:
    status = item.enqueue_status or (ImageStatus.FAILED if item.enqueue_error or result is None else result.status)
    return ImageRow(
        path=item.path,
        status=ImageStatus(status),
        probability=result.probability if result else None,
        flagged=result.flagged if result else None,
        reason=item.enqueue_error or (result.reason if result else None),
        model_version=f"{result.model_version_id}:{version_name}" if result else None,
        threshold=result.threshold if result else None,
        population=result.population if result else None,
        population_basis=result.population_basis if result else None,
        adult_score=result.adult_score if result else None,
        already_screened=bool(result and result.batch_id != batch_id),
        study_uid=item.study_uid,
        sop_uid=item.sop_uid,
        sha256=item.sha256,
        result_id=result.id if result else None,
    )


@dataclass(frozen=True)
class StudyRow:
    """One DICOM study at one model version (the study_results view): its images by what became of them, and its
    highest image probability."""

    study_uid: str
    images: int
    images_screened: int
    images_skipped: int
    images_failed: int
    images_pending: int
    probability: float | None
    flagged: bool

    @classmethod
    def from_view(cls, row: dict[str, Any]) -> StudyRow:
        return cls(
            study_uid=row["study_uid"],
            images=int(row["images"]),
            images_screened=int(row["images_screened"] or 0),
            images_skipped=int(row["images_skipped"] or 0),
            images_failed=int(row["images_failed"] or 0),
            images_pending=int(row["images_pending"] or 0),
            probability=row["probability"],
            flagged=bool(row["flagged"]),
        )


def study_rows(session: Session, model_version_id: int, study_uids: list[str] | None = None) -> list[StudyRow]:
    """Each study's row of the study_results view."""
    query = select(study_results).where(study_results.c.model_version_id == model_version_id)
    if study_uids is not None:
        query = query.where(study_results.c.study_uid.in_(study_uids))
    rows = session.execute(query.order_by(study_results.c.study_uid))
    return [StudyRow.from_view(dict(row._mapping)) for row in rows]


def batch_studies(session: Session, batch_id: str) -> list[StudyRow]:
    """The studies a batch found, at the batch's model version (each instance counted once)."""
    version_id = session.get_one(Batch, batch_id).model_version_id
    uids = session.scalars(
        select(BatchItem.study_uid).where(BatchItem.batch_id == batch_id, BatchItem.study_uid.is_not(None)).distinct()
    )
    return study_rows(session, version_id, sorted(uid for uid in uids if uid))


def batch_objects(session: Session, batch_id: str) -> list[OutboxObject]:
    """The DICOM results made (or tried) for a batch's studies, oldest first."""
    return list(
        session.scalars(select(OutboxObject).where(OutboxObject.batch_id == batch_id).order_by(OutboxObject.id))
    )
