"""Scoring labelled images exactly as the worker would, and the metrics a version is judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from screening.imaging.preprocess import PreprocessSpec
from screening.model.infer import Classifier
from screening.training.features import model_input
from screening.training.metrics import binary_metrics, bootstrap_intervals
from screening.training.split import LABELS


def labelled_images(data: Path) -> list[tuple[Path, int]]:
    """DATA/NORMAL and DATA/PNEUMONIA, or one folder of Kermany-named files (NORMAL2-…, person…_virus_…)."""
    if any((data / name).is_dir() for name in LABELS):
        return [(p, label) for name, label in LABELS.items() for p in sorted((data / name).iterdir()) if p.is_file()]
    labelled = []
    for path in sorted(p for p in data.iterdir() if p.is_file()):
        name = path.name.lower()
        if "normal" in name:
            labelled.append((path, 0))
        elif "bacteria" in name or "virus" in name or "pneumonia" in name:
            labelled.append((path, 1))
        else:
            raise ValueError(f"cannot tell the label of {path.name}: use NORMAL/ and PNEUMONIA/ folders")
    return labelled


def score_images(classifier: Classifier, spec: PreprocessSpec, paths: list[Path], batch: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            classifier.probabilities(np.stack([model_input(p, spec) for p in paths[i : i + batch]]))
            for i in range(0, len(paths), batch)
        ]
    )


def evaluate(classifier: Classifier, spec: PreprocessSpec, threshold: float, data: Path, rounds: int = 1000) -> dict:
    images = labelled_images(data)
    labels = np.array([label for _, label in images])
    scores = score_images(classifier, spec, [path for path, _ in images])
    return {
        **binary_metrics(labels, scores, threshold),
        "ci95": bootstrap_intervals(labels, scores, threshold, rounds),
        "bootstrap_rounds": rounds,
    }
