"""The review app's use cases: the worklist, one image with its heatmap and sends, and a radiologist's verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cv2

from screening.db.review import ReviewRow, review_rows, study_sends
from screening.db.schema import ImageStatus, ModelVersion, Result, SendStatus
from screening.errors import ScreeningError
from screening.imaging.pipeline import prepare_file
from screening.imaging.preprocess import PreprocessSpec
from screening.usecases.context import Services
from screening.usecases.explain import explain
from screening.usecases.label import Truth, record_labels
from screening.usecases.results import operating_point

__all__ = [
    "ImageStatus",
    "ImageView",
    "NoSuchImage",
    "ReviewRow",
    "ReviewStudy",
    "Truth",
    "image_view",
    "studies_of",
    "worklist",
]


class NoSuchImage(ScreeningError):
    pass


@dataclass(frozen=True)
class ImageView:
    row: ReviewRow
    threshold: float  # of the operating point it was scored at
    operating_point: str  # whose point that is and why: `child, threshold 0.430 (header)`
    sends: list[tuple[str, SendStatus, int, str | None]]


def worklist(
    services: Services, batch_id: str | None = None, day: date | None = None, status: ImageStatus | None = None
) -> list[ReviewRow]:
    with services.sessions() as session:
        return review_rows(session, batch_id, day, status)


@dataclass(frozen=True)
class ReviewStudy:
    uid: str
    images: int
    probability: float | None  # its highest image probability; None when no image was scored
    flagged: bool
    top: int | None  # the result id of that image


def studies_of(rows: list[ReviewRow]) -> list[ReviewStudy]:
    """The DICOM studies of worklist rows, flagged first, then by their highest probability."""
    by_study: dict[str, list[ReviewRow]] = {}
    for row in rows:
        if row.study_uid:
            by_study.setdefault(row.study_uid, []).append(row)
    studies = []
    for uid, members in by_study.items():
        scored = [row for row in members if row.probability is not None]
        top = max(scored, key=lambda row: row.probability or 0.0) if scored else None
        probability = top.probability if top else None
        studies.append(
            ReviewStudy(uid, len(members), probability, bool(top and top.flagged), top.result_id if top else None)
        )
    return sorted(
        studies, key=lambda study: (not study.flagged, -(study.probability if study.probability is not None else -1))
    )


def _result(services: Services, result_id: int) -> tuple[Result, ModelVersion]:
    with services.sessions() as session:
        result = session.get(Result, result_id)
        if result is None or result.status == ImageStatus.QUEUED:
            raise NoSuchImage(f"no screened image {result_id}")
        return result, session.get_one(ModelVersion, result.model_version_id)


def image_view(services: Services, result_id: int) -> ImageView:
    result, version = _result(services, result_id)
    with services.sessions() as session:
        (row,) = review_rows(session, result_id=result_id)
        sends = study_sends(session, result.study_uid) if result.study_uid else []
    threshold = version.threshold if result.threshold is None else result.threshold  # rows from before the points
    return ImageView(row, threshold, operating_point(result), sends)


def model_input_png(services: Services, result_id: int) -> bytes:
    """The 224 x 224 image the model saw, as PNG."""
    result, version = _result(services, result_id)
    prepared = prepare_file(
        Path(result.path), PreprocessSpec.from_dict(version.preprocessing), services.settings.image_limits
    )
    return cv2.imencode(".png", prepared.image)[1].tobytes()


def heatmap_png(services: Services, result_id: int) -> bytes:
    """The film with the Grad-CAM of the version that screened it, as PNG; cached under SCREEN_DATA_DIR."""
    result, version = _result(services, result_id)
    cache = services.settings.data_dir / "heatmaps" / f"{result.sha256}-{version.id}.png"
    if not cache.exists():
        overlay = explain(services, Path(result.path), version).overlay
        cache.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cache), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    return cache.read_bytes()


def record_verdict(services: Services, result_id: int, truth: Truth) -> None:
    """The radiologist's reading, into the same labels table as `screen label`."""
    result, _ = _result(services, result_id)
    record_labels(services, [(result.sha256, truth.value)], "review page")
