"""Retraining with radiologists' labels, judged on the parent version's own validation split.

The validation split never changes between a version and its retrained child, so their
metrics compare like with like; the child is promoted only if it is not worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.model.figures import BinaryMetrics
from screening.model.manifest import ModelManifest
from screening.training.manifest_csv import for_commercial_use
from screening.training.sources import SourceSpec, examples_of
from screening.training.split import Example, Split

PROMOTION_FIGURES = ("roc_auc", "sensitivity")


class RetrainError(ScreeningError):
    pass


@dataclass(frozen=True)
class LabelledImage:
    """A screened image with a radiologist's reading."""

    sha256: str
    path: Path
    pneumonia: bool


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(parent: BinaryMetrics, candidate: BinaryMetrics, tolerance: float = 0.0) -> Decision:
    """Promote when ROC AUC and sensitivity at the threshold are each at least the parent's - tolerance (a figure
    either lacks: not promoted)."""
    figures = [(name, candidate.figure(name), parent.figure(name)) for name in PROMOTION_FIGURES]
    compared = [f"{name} {_shown(new)} vs {_shown(old)}" for name, new, old in figures]
    worse = [
        text
        for (_, new, old), text in zip(figures, compared, strict=True)
        if new is None or old is None or new < old - tolerance
    ]
    if worse:
        return Decision(False, "worse than the active version on the same validation split: " + "; ".join(worse))
    return Decision(True, "not worse than the active version on the same validation split: " + "; ".join(compared))


def _shown(figure: float | None) -> str:
    return "not measured" if figure is None else f"{figure:.4f}"


def parent_sources(parent: ModelManifest, data_dir: Path | None = None) -> list[SourceSpec]:
    """The labelled sources to retrain on: DATA_DIR when given, else those the parent's manifest records."""
    if data_dir is not None:
        return [SourceSpec("data", data_dir)]
    recorded = parent.notes.sources
    if recorded:
        return [
            SourceSpec(name, Path(folders.train), Path(folders.validation) if folders.validation else None)
            for name, folders in recorded.items()
        ]
    if parent.notes.data_dir:
        return [SourceSpec("data", Path(parent.notes.data_dir))]
    raise RetrainError("the active version does not record its training data: pass it explicitly")


def retraining_split(
    parent: ModelManifest, sources: list[SourceSpec], labelled: list[LabelledImage]
) -> tuple[Split, int, int]:
    """The parent's validation split unchanged; for training, the rest of the sources' images plus the labelled
    images that are not in that validation split and whose file is still the film that was read (a path may hold
    another patient's film by now: its label is not for that one). Returns the split, how many labelled images it
    trains on and how many it leaves out for that reason."""
    config = parent.training_config
    examples: dict[str, Example] = {}
    for spec in sources:
        for folder in (spec.train, spec.validation):
            found = examples_of(spec.name, folder, spec.validation is None) if folder else []
            for example in for_commercial_use(found, config.commercial_use_only):
                examples.setdefault(example.sha256, example)
    validation_hashes = parent.validation_hashes()
    missing = [sha for sha in validation_hashes if sha not in examples]
    if missing:
        folders = ", ".join(str(spec.train) for spec in sources)
        raise RetrainError(f"{len(missing)} images of the active version's validation split are not in {folders}")
    held_out = set(validation_hashes)
    candidates = [image for image in labelled if image.sha256 not in held_out]
    feedback = [
        Example(image.path, int(image.pneumonia), "radiologist label", image.sha256)
        for image in candidates
        if image.path.is_file() and sha256_hex(image.path) == image.sha256
    ]
    train = [example for sha, example in examples.items() if sha not in held_out] + feedback
    return Split(train, [examples[sha] for sha in validation_hashes]), len(feedback), len(candidates) - len(feedback)
