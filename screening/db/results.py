"""Writing results exactly once per image and model version, and reading them back."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from screening.db.batches import existing_results
from screening.db.schema import BatchItem, ModelVersion, Result, study_results

RESULT_FIELDS = (
    "sha256",
    "path",
    "kind",
    "study_uid",
    "series_uid",
    "sop_uid",
    "status",
    "reason",
    "probability",
    "flagged",
    "read_ms",
    "preprocess_ms",
    "infer_ms",
)


def _insert_ignoring_duplicates(session: Session, rows: list[dict]) -> None:
    # ON CONFLICT DO NOTHING against both unique keys: a redelivered or concurrent chunk adds nothing.
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    session.execute(insert(Result).values(rows).on_conflict_do_nothing())


def write_results(session: Session, model_version_id: int, batch_id: str, rows: list[dict]) -> None:
    """Insert the rows this version does not have yet; existing ones stay as they are."""
    if rows:
        _insert_ignoring_duplicates(
            session, [{**row, "model_version_id": model_version_id, "batch_id": batch_id} for row in rows]
        )


def link_items(session: Session, model_version_id: int, items: list[BatchItem]) -> list[BatchItem]:
    """Point each item at the result covering it; return the items still without one."""
    keyed = existing_results(
        session, model_version_id, [i.sha256 for i in items if i.sha256], [i.sop_uid for i in items if i.sop_uid]
    )
    waiting = []
    for item in items:
        result = keyed.get(item.sha256) or (keyed.get(item.sop_uid) if item.sop_uid else None)
        if result is None:
            waiting.append(item)
        elif item.result_id != result.id:
            session.execute(update(BatchItem).where(BatchItem.id == item.id).values(result_id=result.id))
    return waiting


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
        status = "failed" if item.enqueue_error else (result.status if result else "pending")
        rows.append(
            {
                "path": item.path,
                "status": status,
                "probability": result.probability if result else None,
                "flagged": result.flagged if result else None,
                "reason": item.enqueue_error or (result.reason if result else None),
                "model_version": f"{result.model_version_id}:{version_name}" if result else None,
                "already_screened": item.reused_result,
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
