"""The reference films (screening/reference) that a version scores before it is registered.

A sanity check that an artifact serves what it claims, not a measure of how good it is: the films are ones every
shipped release scores right, so a version that misses several is broken (a NaN or zeroed layer, an inverted or
constant output, a threshold that never or always flags, a preprocessing spec that is not what its name says).
Children's films are required of every version; adults' of a version with an adult operating point, and measured
(not required) for the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from screening.model.artifact import ArtifactError, policy_of, read_age_estimate, read_manifest
from screening.model.device import import_backend_quietly
from screening.model.preprocessing import PreprocessSpec, named_spec
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.vocabulary import Population

if TYPE_CHECKING:
    from screening.model.infer import Classifier

REFERENCE_FILMS = Path(__file__).resolve().parents[1] / "reference"
MIN_ROC_AUC = 0.75
# of a population's 10 films, at most this many wrong at the version's operating point (a flag that never or always
# fires gets 5 wrong; a weak but working model, such as one trained on 80 images for a test, 3)
MAX_WRONG = 4


class ReferenceRefused(ArtifactError):
    """The artifact loads but does not serve what it claims on the reference films."""


@dataclass(frozen=True)
class ReferenceFigures:
    """One population's reference films as the version scored them end to end (its gate, its operating point)."""

    population: Population
    required: bool
    pneumonias: int
    pneumonias_flagged: int
    normals: int
    normals_flagged: int
    refused: int  # by the applicability gate: a refused film counts as wrong
    normals_refused: int
    roc_auc: float | None  # of the films the gate let through; None when a class is left out or a score is no number
    finite: bool

    @property
    def wrong(self) -> int:
        """Films the version gets wrong at its operating point: pneumonias not flagged (or refused), normals flagged
        or refused."""
        return self.pneumonias - self.pneumonias_flagged + self.normals_flagged + self.normals_refused

    def problem(self) -> str | None:
        """Why the version fails these films, or None."""
        if not self.finite:
            return "probabilities that are not numbers"
        if self.wrong > MAX_WRONG:
            return (
                f"{self.wrong} of {self.pneumonias + self.normals} films wrong at its operating point "
                f"({self.pneumonias_flagged} of {self.pneumonias} pneumonias and {self.normals_flagged} of "
                f"{self.normals} normals flagged, {self.refused} refused)"
            )
        if self.roc_auc is None or self.roc_auc < MIN_ROC_AUC:
            auc = "none" if self.roc_auc is None else f"{self.roc_auc:.2f}"
            return f"ROC AUC {auc} (at least {MIN_ROC_AUC} asked)"
        return None

    def describe(self) -> str:
        auc = "-" if self.roc_auc is None else f"{self.roc_auc:.2f}"
        refused = f", {self.refused} refused" if self.refused else ""
        required = "" if self.required else " (not required)"
        return (
            f"{self.population}{required}: AUC {auc}, {self.pneumonias_flagged}/{self.pneumonias} pneumonias and "
            f"{self.normals_flagged}/{self.normals} normals flagged{refused}"
        )


@dataclass(frozen=True)
class ReferenceCheck:
    figures: tuple[ReferenceFigures, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"figures": [asdict(figures) for figures in self.figures]}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> ReferenceCheck:
        return cls(
            tuple(ReferenceFigures(**{**f, "population": Population(f["population"])}) for f in stored["figures"])
        )

    def describe(self) -> str:
        return "; ".join(figures.describe() for figures in self.figures)


def _figures(classifier: Classifier, spec: PreprocessSpec, population: Population, required: bool) -> ReferenceFigures:
    from screening.training.evaluate import score_labelled_folder
    from screening.training.metrics import binary_metrics  # scikit-learn: a second on every command's start

    folder = REFERENCE_FILMS / population.value
    label_of = {path.name: label for path, label in labelled_folder(folder)}
    pneumonias = sum(label_of.values())
    normals = len(label_of) - pneumonias
    try:
        scored = score_labelled_folder(classifier, spec, folder, population=population)
    except LabelledDataError:  # the gate refused every film of a class
        return ReferenceFigures(population, required, pneumonias, 0, normals, 0, len(label_of), normals, None, True)
    finite = bool(np.isfinite(scored.probabilities).all())
    flagged = scored.probabilities >= scored.thresholds
    return ReferenceFigures(
        population,
        required,
        pneumonias=pneumonias,
        pneumonias_flagged=int((flagged & (scored.labels == 1)).sum()),
        normals=normals,
        normals_flagged=int((flagged & (scored.labels == 0)).sum()),
        refused=len(scored.excluded),
        normals_refused=sum(1 for excluded in scored.excluded if label_of[excluded.file] == 0),
        roc_auc=binary_metrics(scored.labels, scored.probabilities, 0.5).roc_auc if finite else None,
        finite=finite,
    )


def check_reference_films(path: Path) -> ReferenceCheck:
    """Load the artifact as a worker would and score the reference films; ArtifactError (one line) when it cannot
    be loaded, its preprocessing is not a named spec, or it fails a population it is required to serve."""
    try:
        manifest = read_manifest(path)
        spec = named_spec(manifest.preprocessing)
    except ValueError as problem:
        raise ArtifactError(f"{path.name}: {problem}") from None
    policy_of(manifest, read_age_estimate(path, manifest))  # unusable operating points: ArtifactError
    import_backend_quietly()  # only now: what is no model is refused without the seconds a backend takes to load
    from screening.model.infer import Classifier

    try:
        classifier = Classifier.load(path, None)
    except ArtifactError:
        raise
    except Exception as error:  # a manifest that parses but describes no model we can build
        raise ArtifactError(f"{path.name} cannot be loaded as a model ({type(error).__name__})") from None
    required = {Population.CHILD} | ({Population.ADULT} if classifier.policy.per_population else set())
    check = ReferenceCheck(
        tuple(_figures(classifier, spec, population, population in required) for population in Population)
    )
    failed = [f"{f.population}: {why}" for f in check.figures if f.required and (why := f.problem())]
    if failed:
        raise ReferenceRefused(f"{path.name} fails the reference films ({'; '.join(failed)}): not registered")
    return check
