"""Scoring labelled images exactly as the worker would, and the metrics a version is judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from screening.imaging.errors import ImageRejected
from screening.imaging.preprocess import PreprocessSpec
from screening.model.infer import Classifier
from screening.training.features import model_input
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.metrics import binary_metrics, bootstrap_intervals


def score_images(classifier: Classifier, spec: PreprocessSpec, paths: list[Path], batch: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            classifier.probabilities(np.stack([model_input(p, spec) for p in paths[i : i + batch]]))
            for i in range(0, len(paths), batch)
        ]
    )


def _screenable(images: list[tuple[Path, int]], spec: PreprocessSpec) -> tuple[list[tuple[Path, int]], list[dict]]:
    """The images the worker would score; the others (corrupt, not a radiograph) with the reason it would record."""
    kept, excluded = [], []
    for path, label in images:
        try:
            model_input(path, spec)
        except ImageRejected as problem:
            excluded.append({"file": path.name, "status": str(problem.status), "reason": problem.reason})
        else:
            kept.append((path, label))
    return kept, excluded


def evaluate(classifier: Classifier, spec: PreprocessSpec, threshold: float, data: Path, rounds: int = 1000) -> dict:
    """Metrics with 95% intervals on DATA/NORMAL and DATA/PNEUMONIA; files the worker would not score are listed
    under `excluded`, and both classes must remain."""
    images, excluded = _screenable(labelled_folder(data), spec)
    labels = np.array([label for _, label in images])
    if labels.size == 0 or labels.min() == labels.max():
        raise LabelledDataError(
            f"after leaving out {len(excluded)} file(s) that cannot be scored, {data} no longer has images of both "
            "classes"
        )
    scores = score_images(classifier, spec, [path for path, _ in images])
    return {
        **binary_metrics(labels, scores, threshold),
        "ci95": bootstrap_intervals(labels, scores, threshold, rounds),
        "bootstrap_rounds": rounds,
        "excluded": excluded,
    }
