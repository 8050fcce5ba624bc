"""Exactly one result row per image and model version: claimed at enqueue, filled in by a worker.

An image is its content (SHA-256). Claiming is an INSERT ... ON CONFLICT DO NOTHING RETURNING
id on the unique (sha256, version) key: of two batches that find the same image at the same
moment, exactly one gets the row back and dispatches it; the other links to it. A DICOM file
whose SOPInstanceUID this version already screened (the same instance in other bytes, say
another transfer syntax) links to that result instead of being claimed. A worker fills a row
only while it is still `queued`, so a redelivered chunk changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from screening.db.schema import BatchItem, ModelVersion, Result, study_results, utcnow

OUTCOME_FIELDS = ("status", "reason", "probability", "flagged", "kind", "read_ms", "preprocess_ms", "infer_ms")


def _insert(session: Session):  # noqa: ANN202
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[session.get_bind().dialect.name]


def claim_images(
    session: Session, model_version_id: int, batch_id: str, items: list[BatchItem], stale_after: timedelta
) -> list[int]:
    """Create `queued` rows for images this version has no row for; return the ids to dispatch.

    Rows still queued after `stale_after` (their task was lost before it reached the broker)
    are claimed again, so re-running `screen enqueue` finishes them."""
    now = utcnow()
    screened = set(_screened_by_sop_uid(session, model_version_id, items))
    fresh = {
        item.sha256: {
            "sha256": item.sha256,
            "path": item.path,
            "kind": item.kind,
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "sop_uid": item.sop_uid,
            "status": "queued",
            "model_version_id": model_version_id,
            "batch_id": batch_id,
            "created_at": now,
            "dispatched_at": now,
        }
        for item in items
        if item.sop_uid not in screened
    }
    claimed: list[int] = []
    if fresh:
        statement = _insert(session)(Result).values(list(fresh.values())).on_conflict_do_nothing()
        claimed = list(session.scalars(statement.returning(Result.id)))
    stale = session.scalars(
        update(Result)
        .where(Result.model_version_id == model_version_id, Result.sha256.in_(list(fresh)))
        .where(Result.status == "queued", Result.dispatched_at < now - stale_after)
        .values(dispatched_at=now)
        .returning(Result.id)
    )
    return claimed + list(stale)


def _screened_by_sop_uid(session: Session, model_version_id: int, items: list[BatchItem]) -> dict[str, Result]:
    sop_uids = [item.sop_uid for item in items if item.sop_uid]
    done = session.scalars(
        select(Result).where(
            Result.model_version_id == model_version_id, Result.sop_uid.in_(sop_uids), Result.status == "done"
        )
    )
    return {result.sop_uid: result for result in done}


def link_items(session: Session, model_version_id: int, items: list[BatchItem]) -> None:
    """Point each item at the row that covers its image: by content, else by a screened SOPInstanceUID."""
    by_content = {
        result.sha256: result
        for result in session.scalars(
            select(Result).where(
                Result.model_version_id == model_version_id, Result.sha256.in_([item.sha256 for item in items])
            )
        )
    }
    by_sop_uid = _screened_by_sop_uid(session, model_version_id, items)
    for item in items:
        item.result_id = (by_content.get(item.sha256) or by_sop_uid[item.sop_uid]).id
    session.flush()


def record_outcomes(session: Session, outcomes: list[dict]) -> int:
    """Fill in queued rows (each outcome has `result_id` and OUTCOME_FIELDS); return how many changed."""
    if not outcomes:
        return 0
    table = Result.__table__
    statement = (
        update(table)
        .where(table.c.id == bindparam("result_id"), table.c.status == "queued")
        .values({field: bindparam(field) for field in (*OUTCOME_FIELDS, "screened_at")})
    )
    now = utcnow()
    result = session.connection().execute(statement, [{**o, "screened_at": now} for o in outcomes])
    return result.rowcount


def queued_claims(session: Session, batch_id: str) -> list[int]:
    """Rows a batch claimed that no worker has filled in yet."""
    return list(
        session.scalars(
            select(Result.id).where(Result.batch_id == batch_id, Result.status == "queued").order_by(Result.id)
        )
    )


def queued_results(session: Session, result_ids: list[int]) -> list[Result]:
    return list(session.scalars(select(Result).where(Result.id.in_(result_ids), Result.status == "queued")))


def batch_rows(session: Session, batch_id: str, flagged_only: bool = False) -> list[dict]:
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
    rows = []
    for item, result, version_name in session.execute(query):
        rows.append(
            {
                "path": item.path,
                "status": "failed" if item.enqueue_error else result.status,
                "probability": result.probability if result else None,
                "flagged": result.flagged if result else None,
                "reason": item.enqueue_error or (result.reason if result else None),
                "model_version": f"{result.model_version_id}:{version_name}" if result else None,
                "already_screened": bool(result and result.batch_id != batch_id),
                "study_uid": item.study_uid,
                "sop_uid": item.sop_uid,
                "sha256": item.sha256,
            }
        )
    return rows


def study_rows(session: Session, model_version_id: int, study_uids: list[str] | None = None) -> list[dict]:
    query = select(study_results).where(study_results.c.model_version_id == model_version_id)
    if study_uids is not None:
        query = query.where(study_results.c.study_uid.in_(study_uids))
    return [dict(row._mapping) for row in session.execute(query.order_by(study_results.c.study_uid))]
