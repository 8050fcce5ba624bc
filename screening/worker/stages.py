"""The pipeline's stages, each with a name and declared inputs and outputs (after MONAI Deploy's operators).

Per-image stages fill fields of an ImageJob and raise ImageRejected for bad input; the
runner records that as the job's status and reason, so one bad file never stops a chunk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from screening.db.results import Outcome
from screening.db.schema import ImageStatus
from screening.imaging.errors import ImageRejected, NotScreenable, Unreadable
from screening.imaging.preprocess import PreprocessSpec, preprocess
from screening.imaging.read import decode_radiograph

PENDING = "pending"  # in the pipeline; every job leaves it with an ImageStatus


@dataclass
class ImageJob:
    path: str
    sha256: str
    result_id: int | None = None
    kind: str | None = None
    data: bytes | None = None
    pixels: np.ndarray | None = None
    image: np.ndarray | None = None
    pixel_sha256: str | None = None
    probability: float | None = None
    flagged: bool | None = None
    status: str = PENDING
    reason: str | None = None  # why it was not scored, or a note on how it was (a VOI window ignored)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def reject(self, problem: ImageRejected) -> None:
        self.status, self.reason = problem.status, problem.reason
        self.data = self.pixels = self.image = None

    def score(self, probability: float, threshold: float, note: str | None = None) -> None:
        self.probability, self.flagged = float(probability), bool(probability >= threshold)
        self.status, self.image = ImageStatus.DONE, None
        self.reason = "; ".join(text for text in (self.reason, note) if text) or None

    def outcome(self) -> Outcome:
        """What the results row records."""
        return Outcome(
            result_id=self.result_id,
            status=ImageStatus(self.status),
            reason=self.reason,
            probability=self.probability,
            flagged=self.flagged,
            kind=self.kind,
            pixel_sha256=self.pixel_sha256,
            read_ms=self.timings_ms.get("read", 0) + self.timings_ms.get("decode", 0),
            preprocess_ms=self.timings_ms.get("preprocess"),
            infer_ms=self.timings_ms.get("infer"),
        )


class ReadFile:
    """Bytes of the file, refusing files too large to hold and files changed since they were enqueued."""

    name: ClassVar[str] = "read"
    inputs: ClassVar[tuple[str, ...]] = ("path", "sha256")
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes

    def __call__(self, job: ImageJob) -> None:
        path = Path(job.path)
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                raise NotScreenable(f"file too large: {size} bytes exceeds the limit of {self.max_file_bytes}")
            job.data = path.read_bytes()
        except OSError as error:
            raise Unreadable(f"cannot read file: {error.strerror or type(error).__name__}") from None
        if hashlib.sha256(job.data).hexdigest() != job.sha256:
            raise Unreadable("file changed since it was enqueued (SHA-256 differs); enqueue it again")


class Decode:
    """Pixels and DICOM UIDs from JPEG, PNG or DICOM bytes (see imaging.dicom for the rules)."""

    name: ClassVar[str] = "decode"
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("kind", "pixels")

    def __init__(self, max_image_pixels: int) -> None:
        self.max_image_pixels = max_image_pixels

    def __call__(self, job: ImageJob) -> None:
        radiograph = decode_radiograph(job.data, self.max_image_pixels)
        job.kind, job.pixels, job.data = radiograph.kind, radiograph.pixels, None
        job.pixel_sha256, job.reason = radiograph.pixel_sha256(), radiograph.note


class Preprocess:
    """The model version's preprocessing spec, applied to one radiograph."""

    name: ClassVar[str] = "preprocess"
    inputs: ClassVar[tuple[str, ...]] = ("pixels",)
    outputs: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, job: ImageJob) -> None:
        job.image, job.pixels = preprocess(job.pixels, self.spec), None


def run_image_stages(job: ImageJob, stages: list) -> ImageJob:  # noqa: ANN001
    """Run per-image stages in order; bad input (or a decoder bug) becomes the job's recorded reason."""
    for stage in stages:
        started = time.perf_counter()
        try:
            stage(job)
        except ImageRejected as problem:
            job.reject(problem)
        except Exception as error:  # a decoder crash on one file must not lose the chunk
            job.reject(Unreadable(f"{stage.name} failed: {type(error).__name__}: {str(error)[:200]}"))
        job.timings_ms[stage.name] = (time.perf_counter() - started) * 1000
        if job.status != PENDING:
            return job
    return job


class Infer:
    """Batched probabilities and flags for every job that got through preprocessing."""

    name: ClassVar[str] = "infer"
    inputs: ClassVar[tuple[str, ...]] = ("image",)
    outputs: ClassVar[tuple[str, ...]] = ("probability", "flagged", "status")

    def __init__(self, classifier, threshold: float) -> None:  # noqa: ANN001
        self.classifier, self.threshold = classifier, threshold

    def __call__(self, jobs: list[ImageJob]) -> None:
        ready = [job for job in jobs if job.status == PENDING]
        if not ready:
            return
        started = time.perf_counter()
        probabilities = self.classifier.probabilities(np.stack([job.image for job in ready]))
        per_image_ms = (time.perf_counter() - started) * 1000 / len(ready)
        for job, probability in zip(ready, probabilities, strict=True):
            job.score(probability, self.threshold)
            job.timings_ms[self.name] = per_image_ms
