"""Reading a batch: its progress, and its results per image or per study."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from screening.db.batches import (
    BatchProgress,
    aware,
    batch_progress,
    batches_starting_with,
    latest_batch_id,
    latest_batches,
)
from screening.db.leases import StrandedWork
from screening.db.results import SCORE_FIELDS, ImageRow, StudyRow, batch_objects, batch_rows, batch_studies
from screening.db.schema import Batch, OutboxObject
from screening.errors import NotFound
from screening.usecases.context import Services
from screening.vocabulary import Population, PopulationBasis, ResultKind, SendStatus

__all__ = [
    "SCORE_FIELDS",
    "BatchLine",
    "BatchProgress",
    "BatchResults",
    "INTERRUPTED_HINT",
    "ImageRow",
    "StrandedWork",
    "StudyLine",
    "batch_results",
    "batch_status",
    "find_batch",
    "operating_point",
    "recent_batches",
    "utc_text",
]


class NoSuchBatch(NotFound):
    pass


SHORTEST_PREFIX = 6  # of a batch id, to name it (`screen batches` shows eight characters)


def find_batch(session: Session, batch_id: str | None) -> str:
    """`batch_id`, or the one batch whose id starts with it, or the latest batch when it is None; NoSuchBatch when
    there is none (or, for a prefix, more than one)."""
    if not batch_id:
        latest = latest_batch_id(session)
        if latest is None:
            raise NoSuchBatch("no batch yet: run `screen enqueue`")
        return latest
    if session.get(Batch, batch_id) is not None:
        return batch_id
    if len(batch_id) >= SHORTEST_PREFIX:
        found = batches_starting_with(session, batch_id)
        if len(found) == 1:
            return found[0]
        if found:
            raise NoSuchBatch(f"{len(found)} batches start with {batch_id}: give more of the id")
    raise NoSuchBatch("no such batch: `screen batches` lists them")


@dataclass(frozen=True)
class BatchLine:
    """One line of `screen batches`."""

    progress: BatchProgress
    created_at: datetime
    roots: list[str]
    model_version_id: int


def recent_batches(services: Services, limit: int = 20) -> list[BatchLine]:
    """The latest batches, newest first, with their progress."""
    with services.sessions() as session:
        return [
            BatchLine(batch_progress(session, batch.id), aware(batch.created_at), batch.roots, batch.model_version_id)
            for batch in latest_batches(session, limit)
        ]


def batch_status(services: Services, batch_id: str | None) -> BatchProgress:
    with services.sessions() as session:
        return batch_progress(session, find_batch(session, batch_id))


@dataclass(frozen=True)
class StudyLine(StudyRow):
    """A study's row as people read it: why it has no score, and what became of the DICOM results made for it."""

    note: str | None = None
    sent: str | None = None  # the report's and heatmaps' sends


@dataclass(frozen=True)
class BatchResults:
    batch_id: str
    model_version_id: int
    roots: list[str]
    images: list[ImageRow]
    studies: list[StudyLine]


def batch_results(services: Services, batch_id: str | None, flagged_only: bool = False) -> BatchResults:
    """Every file of a batch (default: the latest) and every DICOM study it found, optionally flagged ones only."""
    with services.sessions() as session:
        batch = session.get_one(Batch, find_batch(session, batch_id))
        images = batch_rows(session, batch.id, flagged_only)
        sends: dict[str, list[str]] = {}
        for made in batch_objects(session, batch.id):
            sends.setdefault(made.study_uid, []).append(send_note(made))
        studies = [
            StudyLine(**vars(study), note=study_note(study), sent="; ".join(sends.get(study.study_uid, [])) or None)
            for study in batch_studies(session, batch.id)
            if study.flagged or not flagged_only
        ]
        return BatchResults(batch.id, batch.model_version_id, list(batch.roots), images, studies)


def study_note(study: StudyRow) -> str | None:
    """Why a study has no score: `2 image(s) still being screened`, `no image could be screened: 2 failed`."""
    if study.images_pending:
        return f"{study.images_pending} image(s) still being screened"
    if study.images_screened:
        return None
    counts = {"failed": study.images_failed, "skipped": study.images_skipped}
    return "no image could be screened: " + ", ".join(f"{count} {what}" for what, count in counts.items() if count)


def send_note(made: OutboxObject) -> str:
    """What became of one DICOM result: `report sent`, `heatmap failed after 3 attempts (association rejected)`."""
    kind = "report" if made.kind == ResultKind.REPORT else "heatmap"
    if made.status == SendStatus.SUPERSEDED:
        return f"{kind} superseded by a later one"
    if not made.path:  # it could not be made (yet), so it was never sent
        tried = f"{made.attempts} attempt{'s' if made.attempts > 1 else ''}"
        again = "tried again later" if made.status == SendStatus.PENDING else "given up"
        return f"{kind} {made.last_error} ({tried}, {again})"
    if made.destination is None:
        return f"{kind} in the outbox (no SCREEN_RESULTS_DESTINATION)"
    if made.status == SendStatus.FAILED:
        return f"{kind} failed after {made.attempts} attempts ({made.last_error})"
    return f"{kind} {made.status}"


INTERRUPTED_HINT = "its enqueue stopped early: `screen requeue` records and screens the rest"


class ScoredAt(Protocol):
    """A scored image's operating point, as a result row or an image row holds it."""

    @property
    def threshold(self) -> float | None: ...
    @property
    def population(self) -> Population | None: ...
    @property
    def population_basis(self) -> PopulationBasis | None: ...
    @property
    def adult_score(self) -> float | None: ...


def operating_point(row: ScoredAt) -> str:
    """Which point an image was scored at and why, for people: `adult, threshold 0.182 (header)`, `child, threshold
    0.430 (estimate, P(adult) 0.02)`, the threshold alone for a version with one point; "" when it was not scored."""
    if row.threshold is None:
        return ""
    if row.population is None:
        return f"threshold {row.threshold:.3f}"
    why = str(row.population_basis)
    if row.adult_score is not None and row.population_basis in (PopulationBasis.ESTIMATE, PopulationBasis.UNCERTAIN):
        why += f", P(adult) {row.adult_score:.2f}"
    if row.population_basis == PopulationBasis.UNCERTAIN:
        why += ": not placed, the more sensitive point"
    return f"{row.population}, threshold {row.threshold:.3f} ({why})"


def utc_text(moment: datetime | None) -> str:
    """`2026-12-07 03:55:12 UTC` (SQLite hands back naive datetimes; they were written in UTC)."""
    return aware(moment).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "at an unknown time"
