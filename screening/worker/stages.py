"""The pipeline's stages, each with a name and declared inputs and outputs (after MONAI Deploy's operators).

Per-image stages fill fields of an ImageJob and raise ImageRejected for bad input; the
runner records that as the job's status and reason, so one bad file never stops a chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from screening.config import ImageLimits
from screening.db.results import Outcome
from screening.imaging.errors import ImageRejected, NotScreenable, Unreadable
from screening.imaging.pipeline import prepare, read_image_file
from screening.model.population import Known, known_population
from screening.model.preprocessing import PreprocessSpec
from screening.vocabulary import ImageStatus, Population, PopulationBasis

if TYPE_CHECKING:
    from screening.model.infer import Assessment


@dataclass(frozen=True)
class Score:
    """An image's probability and flag, at the operating point it was scored at, and why that point."""

    probability: float
    threshold: float
    population: Population | None = None  # None: a version with one operating point for every image
    basis: PopulationBasis | None = None
    adult_score: float | None = None  # the age-group estimate's P(adult), where it was computed

    @property
    def flagged(self) -> bool:
        return self.probability >= self.threshold


@dataclass
class ImageJob:
    path: str
    sha256: str
    result_id: int | None = None
    population_override: Population | None = None  # the batch's `--population`
    kind: str | None = None
    data: bytes | None = None
    image: np.ndarray | None = None
    pixel_sha256: str | None = None
    age_years: float | None = None  # from the DICOM header, where it gives a valid one
    scored: Score | None = None
    status: ImageStatus | None = None  # None while in the pipeline; every job leaves it with one
    reason: str | None = None  # why it was not scored, or a note on how it was (a VOI window ignored)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def reject(self, problem: ImageRejected) -> None:
        self.status, self.reason = problem.status, problem.reason
        self.data = self.image = None

    def score(self, scored: Score, note: str | None = None) -> None:
        self.scored, self.status, self.image = scored, ImageStatus.DONE, None
        self.reason = "; ".join(text for text in (self.reason, note) if text) or None

    @property
    def pending(self) -> bool:
        return self.status is None

    @property
    def probability(self) -> float | None:
        return self.scored.probability if self.scored else None

    def known_population(self) -> Known:
        return known_population(self.age_years, self.population_override)

    def outcome(self) -> Outcome:
        """What the results row records."""
        assert self.result_id is not None and self.status is not None
        scored = self.scored
        return Outcome(
            result_id=self.result_id,
            status=self.status,
            reason=self.reason,
            probability=scored.probability if scored else None,
            flagged=scored.flagged if scored else None,
            threshold=scored.threshold if scored else None,
            population=scored.population if scored else None,
            population_basis=scored.basis if scored else None,
            adult_score=scored.adult_score if scored else None,
            kind=self.kind,
            pixel_sha256=self.pixel_sha256,
            read_ms=self.timings_ms.get("read", 0) + self.timings_ms.get("decode", 0),  # the prepare stage's parts
            preprocess_ms=self.timings_ms.get("preprocess"),
            infer_ms=self.timings_ms.get("infer"),
        )


class ReadFile:
    """Bytes of the file, refusing files too large to hold and files changed since they were enqueued."""

    name: ClassVar[str] = "read"
    inputs: ClassVar[tuple[str, ...]] = ("path", "sha256")
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def __init__(self, limits: ImageLimits) -> None:
        self.limits = limits

    def __call__(self, job: ImageJob) -> None:
        job.data = read_image_file(Path(job.path), self.limits, job.sha256)


class Prepare:
    """Decode and preprocess with the model version's spec: the pipeline every scorer shares."""

    name: ClassVar[str] = "prepare"
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("kind", "image", "pixel_sha256", "age_years")

    def __init__(self, spec: PreprocessSpec, limits: ImageLimits) -> None:
        self.spec, self.limits = spec, limits

    def __call__(self, job: ImageJob) -> None:
        data, job.data = job.data, None
        assert data is not None  # ReadFile ran
        prepared = prepare(data, self.spec, self.limits)
        job.kind, job.image, job.pixel_sha256, job.reason, job.age_years = (
            prepared.kind,
            prepared.image,
            prepared.pixel_sha256,
            prepared.note,
            prepared.age_years,
        )
        job.timings_ms.update(prepared.timings_ms)


def run_image_stages(job: ImageJob, stages: list[ReadFile | Prepare]) -> ImageJob:
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
        if not job.pending:
            return job
    return job


class Infer:
    """Batched probabilities and flags for every job that got through preprocessing, each at its population's
    operating point; an image the version's applicability gate refuses is skipped with the gate's score instead."""

    name: ClassVar[str] = "infer"
    inputs: ClassVar[tuple[str, ...]] = ("image", "age_years", "population_override")
    outputs: ClassVar[tuple[str, ...]] = ("scored", "status")

    def __init__(self, classifier) -> None:  # noqa: ANN001
        self.classifier = classifier

    def __call__(self, jobs: list[ImageJob]) -> None:
        ready = [(job, job.image) for job in jobs if job.pending and job.image is not None]
        if not ready:
            return
        started = time.perf_counter()
        assessed = self.classifier.assess(
            np.stack([image for _, image in ready]), [job.known_population() for job, _ in ready]
        )
        per_image_ms = (time.perf_counter() - started) * 1000 / len(ready)
        for index, (job, _) in enumerate(ready):
            if refusal := assessed.refusal(index):
                job.reject(NotScreenable(refusal))
            else:
                job.score(score_of(assessed, index))
            job.timings_ms[self.name] = per_image_ms


def score_of(assessed: Assessment, index: int) -> Score:
    decision = assessed.decisions[index]
    adult = assessed.adult_scores
    return Score(
        float(assessed.probabilities[index]),
        decision.point.threshold,
        decision.population,
        decision.basis,
        None if adult is None else float(adult[index]),
    )
