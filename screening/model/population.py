"""Operating points per population: children and adults score differently, so each has its own temperature and
threshold, chosen on its own validation films for a stated sensitivity.

Which population an image belongs to comes, in this order, from its DICOM header (the patient's age), from the
batch (`screen enqueue --population`, for a folder of known population), or from the age-group estimate: a linear
probe on the classifier's pooled backbone features, like the applicability gate. An image the estimate cannot
place confidently gets the more sensitive operating point (the one that flags more). Backend-free: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from screening.errors import InvalidRequest
from screening.model.manifest import EstimateRecord, PopulationsRecord
from screening.model.probe import LinearProbe
from screening.vocabulary import Population, PopulationBasis

__all__ = [
    "AgeGroupEstimate",
    "Decision",
    "OperatingPoint",
    "Population",
    "PopulationBasis",
    "Known",
    "PopulationPolicy",
    "known_population",
    "population_of_age",
]
ADULT_AGE = 18  # years: under it, a child
ESTIMATE_VERSION = "age-group-estimate/1"


def population_of_age(years: float) -> Population:
    return Population.ADULT if years >= ADULT_AGE else Population.CHILD


Known = tuple[Population, PopulationBasis] | None  # an image's population where its header or its batch says it


def known_population(age_years: float | None, override: Population | None) -> Known:
    """The header's age decides; else the batch's (or the folder's) stated population; else nothing is known and the
    age-group estimate decides."""
    if age_years is not None:
        return population_of_age(age_years), PopulationBasis.HEADER
    if override is not None:
        return override, PopulationBasis.OVERRIDE
    return None


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # on calibrated probabilities: at or above it, an image is flagged
    temperature: float  # the logit is divided by it before the sigmoid

    def usable(self) -> OperatingPoint:
        """This point, if it can serve: one that would flag every image, none, or the wrong ones is a ValueError."""
        if not (math.isfinite(self.threshold) and 0 < self.threshold < 1):
            raise InvalidRequest(f"a threshold is a probability strictly between 0 and 1, not {self.threshold}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidRequest(f"a temperature is a positive number, not {self.temperature}")
        return self

    @property
    def logit_threshold(self) -> float:
        """The logit at and above which this point flags: comparable across temperatures."""
        clipped = min(max(self.threshold, 1e-12), 1 - 1e-12)
        return self.temperature * math.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class AgeGroupEstimate(LinearProbe):
    """P(adult) from the pooled features; at or above `adult_from` an adult, below `child_below` a child, and in
    between not placed (the more sensitive operating point is used)."""

    adult_from: float = 0.9
    child_below: float = 0.1
    version: str = ESTIMATE_VERSION

    def place(self, adult_score: float) -> Population | None:
        if adult_score >= self.adult_from:
            return Population.ADULT
        if adult_score < self.child_below:
            return Population.CHILD
        return None

    @classmethod
    def from_stored(cls, described: EstimateRecord, arrays: dict[str, np.ndarray]) -> AgeGroupEstimate:
        """From the manifest's `populations.estimate` entry and age_group.npz; KeyError or ValueError on a mismatch."""
        if described.version != ESTIMATE_VERSION:
            raise InvalidRequest(f"not a {ESTIMATE_VERSION} estimate")
        return cls(
            **LinearProbe.stored(arrays),  # type: ignore[arg-type]
            adult_from=described.adult_from,
            child_below=described.child_below,
        )


@dataclass(frozen=True)
class Decision:
    """The operating point an image is scored at, and why."""

    point: OperatingPoint
    population: Population | None  # whose point it is (not placed: the more sensitive one's); None: one point only
    basis: PopulationBasis | None  # None: a version with one operating point


@dataclass(frozen=True)
class PopulationPolicy:
    """A version's operating points: one per population, or a single one for every image (versions 1 to 3)."""

    points: dict[Population, OperatingPoint]
    single: OperatingPoint | None = None
    estimate: AgeGroupEstimate | None = None

    @classmethod
    def one_point(cls, threshold: float, temperature: float) -> PopulationPolicy:
        return cls({}, single=OperatingPoint(threshold, temperature).usable())

    @classmethod
    def from_manifest(
        cls,
        threshold: float,
        temperature: float,
        described: PopulationsRecord | None,
        estimate: AgeGroupEstimate | None,
    ) -> PopulationPolicy:
        """From a manifest's `populations` entry (None: one operating point for every image); ValueError when it
        lacks a population or a point is not a probability and a positive temperature."""
        for_every_image = cls.one_point(threshold, temperature)  # with populations, the more sensitive one's
        if not described:
            return for_every_image
        points = {}
        for population in Population:
            stored = described.points.get(population.value)
            if stored is None:
                raise InvalidRequest(f"no {population} operating point")
            try:
                points[population] = OperatingPoint(stored.threshold, stored.temperature).usable()
            except ValueError as problem:
                raise InvalidRequest(f"the {population} operating point: {problem}") from None
        return cls(points, estimate=estimate)

    @property
    def per_population(self) -> bool:
        return not self.single

    @property
    def most_sensitive(self) -> Population:
        return min(self.points, key=lambda population: self.points[population].logit_threshold)

    def decide(self, known: Known, adult_score: float | None) -> Decision:
        """The operating point for one image: its known population (header or override) if any, else the estimate's
        placement, else the more sensitive point."""
        if self.single is not None:
            return Decision(self.single, None, None)
        if known is not None:
            return Decision(self.points[known[0]], *known)
        placed = self.estimate.place(adult_score) if self.estimate and adult_score is not None else None
        if placed is None:
            return Decision(self.points[self.most_sensitive], self.most_sensitive, PopulationBasis.UNCERTAIN)
        return Decision(self.points[placed], placed, PopulationBasis.ESTIMATE)
