"""Ground truth from radiologists, attached to screened images by content."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from screening.db.batches import aware
from screening.db.schema import Label, LabelChange, Result, utcnow
from screening.errors import NotFound


class UnknownImage(NotFound):
    pass


def screened_image(session: Session, key: str) -> Result:
    """The newest result for an image named by its SHA-256 or SOPInstanceUID."""
    result = session.scalars(
        select(Result).where((Result.sha256 == key) | (Result.sop_uid == key)).order_by(Result.id.desc()).limit(1)
    ).first()
    if result is None:
        raise UnknownImage(f"no screened image with SHA-256 or SOPInstanceUID {key}")
    return result


@dataclass(frozen=True)
class LabelEntry:
    """One label as it was recorded (the history of a film's labels, newest first)."""

    pneumonia: bool
    source: str
    reader: str | None
    recorded_at: datetime


def record_label(session: Session, sha256: str, pneumonia: bool, source: str, reader: str | None = None) -> Label:
    """One current label per image (a later label replaces an earlier one), and every label kept in its history."""
    label = session.scalar(select(Label).where(Label.sha256 == sha256))
    if label is None:
        label = Label(sha256=sha256)
        session.add(label)
    label.pneumonia, label.source, label.created_at = pneumonia, source, utcnow()
    session.add(LabelChange(sha256=sha256, pneumonia=pneumonia, source=source, reader=reader, created_at=utcnow()))
    session.flush()
    return label


def label_history(session: Session, sha256: str) -> list[LabelEntry]:
    """Every label recorded for a film, newest first."""
    changes = session.scalars(select(LabelChange).where(LabelChange.sha256 == sha256).order_by(LabelChange.id.desc()))
    return [LabelEntry(one.pneumonia, one.source, one.reader, aware(one.created_at)) for one in changes]


def radiologist_labels(session: Session) -> list[tuple[str, str, bool]]:
    """(sha256, path, pneumonia) for every labelled image, with the path of its newest result."""
    newest_path = {
        sha: path
        for sha, path in session.execute(
            select(Result.sha256, Result.path).where(Result.sha256.in_(select(Label.sha256))).order_by(Result.id)
        )
    }
    return [(label.sha256, newest_path[label.sha256], label.pneumonia) for label in session.scalars(select(Label))]
