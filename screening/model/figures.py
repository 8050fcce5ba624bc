"""What a version's manifest says was measured: typed records, so a renamed figure is an error where the manifest
is read (registration, loading), not a KeyError in the card at the end of a training run.

Written by training (training.metrics, populations, consistency, gate) and read by the card, the report, the CLI
and the registry. Stored as JSON in the artifact's manifest.json; model.manifest reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator

Interval = tuple[float, float]  # a 95% bootstrap interval


@dataclass(frozen=True)
class Confusion:
    tn: int
    fp: int
    fn: int
    tp: int


@dataclass(frozen=True)
class BinaryMetrics:
    """Scores against labels at an operating point (training.metrics.binary_metrics). None where the images'
    classes allow no such figure: a source of pneumonias only has no ROC AUC and no specificity."""

    images: int
    roc_auc: float | None = None
    accuracy: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    precision: float | None = None
    f1: float | None = None
    ece: float | None = None
    threshold: float | None = None  # the one threshold every image was judged at, if there was one
    confusion: Confusion | None = None
    ci95: dict[str, Interval] = field(default_factory=dict)  # per figure above, where both classes are there

    def figure(self, name: str) -> float | None:
        """One of the figures above by name (the card's columns)."""
        value = getattr(self, name)
        return None if value is None else float(value)


@dataclass(frozen=True)
class Excluded:
    """A file of a labelled folder the worker would not score, and why (coded: no text from the file)."""

    file: str
    status: str
    reason: str
    gate: bool = False  # refused by the applicability gate (not by the pipeline's rules)


@dataclass(frozen=True)
class PopulationCheck(BinaryMetrics):
    decided_by: dict[str, int] = field(default_factory=dict)  # images per basis: header, override, estimate...


@dataclass(frozen=True)
class CheckFigures(BinaryMetrics):
    """A labelled folder scored end to end as a worker would (training.evaluate)."""

    bootstrap_rounds: int | None = None
    gate_refused: int | None = None  # files the applicability gate refused: not in the figures
    excluded: list[Excluded] = field(default_factory=list)
    by_population: dict[str, PopulationCheck] = field(default_factory=dict)

    @property
    def gate_refusal_share(self) -> float | None:
        """The gate's refusals among the folder's files that reached it."""
        return None if self.gate_refused is None else self.gate_refused / max(self.images + self.gate_refused, 1)


def _folds_apart(stored: Any) -> Any:
    """Manifests before this record kept the number of folds among the groups: {"folds": 5, "all": {...}}."""
    if isinstance(stored, dict) and "groups" not in stored:
        return {"folds": stored.get("folds"), "groups": {k: v for k, v in stored.items() if k != "folds"}}
    return stored


@dataclass(frozen=True)
class CrossValidated:
    """The same validation films, each judged at a point chosen on the other patient-wise folds."""

    folds: int
    groups: dict[str, BinaryMetrics]  # "all" and each source


@dataclass(frozen=True)
class PopulationFigures(BinaryMetrics):
    """A population's validation films at its own operating point."""

    cross_validated: Annotated[CrossValidated | None, BeforeValidator(_folds_apart)] = None


@dataclass(frozen=True)
class Baseline:
    """The logistic regression on frozen ImageNet features the model must beat."""

    method: str
    validation: BinaryMetrics | None = None
    validation_by_source: dict[str, BinaryMetrics] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    wall_minutes: float
    peak_rss_mb: int


@dataclass(frozen=True)
class FlagKept:
    """Films whose flag stayed the same under one variation (a refused variation counts as changed)."""

    same_flag: int
    refused: int
    rate: float


def _variations_apart(stored: Any) -> Any:
    """Manifests before this record kept the film count among the variations: {"films": 94, "mirrored": {...}}."""
    if isinstance(stored, dict) and "variations" not in stored:
        return {"films": stored.get("films"), "variations": {k: v for k, v in stored.items() if k != "films"}}
    return stored


@dataclass(frozen=True)
class PopulationConsistency:
    films: int
    variations: dict[str, FlagKept]


@dataclass(frozen=True)
class Consistency:
    """How often the flag survives variations that do not change the diagnosis (training.consistency)."""

    target: float
    populations: dict[str, Annotated[PopulationConsistency, BeforeValidator(_variations_apart)]]


@dataclass(frozen=True)
class Metrics:
    """Everything a training run (or the steps that add to a version) measured."""

    epochs: int | None = None
    fine_tuning_kept: bool | None = None
    validation: BinaryMetrics | None = None  # every validation image, pooled
    validation_by_source: dict[str, BinaryMetrics] = field(default_factory=dict)
    validation_ece_before_calibration: float | None = None
    baseline: Baseline | None = None
    checks: dict[str, CheckFigures] = field(default_factory=dict)  # labelled folders scored end to end
    populations: dict[str, PopulationFigures] = field(default_factory=dict)
    training_resources: Resources | None = None
    consistency: Consistency | None = None
