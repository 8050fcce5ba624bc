"""Scoring labelled images exactly as the worker would, and the metrics a version is judged by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from screening.config import ImageLimits
from screening.db.schema import ImageStatus
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import prepare_file
from screening.imaging.preprocess import PreprocessSpec
from screening.model.infer import Assessment, Classifier
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.metrics import binary_metrics, bootstrap_intervals


def score_labelled_folder(
    classifier: Classifier, spec: PreprocessSpec, folder: Path, limits: ImageLimits = ImageLimits()
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Labels and calibrated probabilities of the images the worker would score, and the others (corrupt, not a
    radiograph, refused by the applicability gate) with the status and reason it would record."""
    labels, images, names = [], [], []
    excluded: list[dict[str, Any]] = []
    for path, label in labelled_folder(folder):
        try:
            images.append(prepare_file(path, spec, limits).image)
        except ImageRejected as problem:
            excluded.append({"file": path.name, "status": str(problem.status), "reason": problem.reason})
        else:
            labels.append(label)
            names.append(path.name)
    assessed = classifier.assess(np.stack(images)) if images else Assessment(np.zeros(0))
    for index, name in enumerate(names):
        if refusal := assessed.refusal(index):
            excluded.append({"file": name, "status": str(ImageStatus.SKIPPED), "reason": refusal, "gate": True})
    kept = ~assessed.refused
    scored_labels = np.array(labels, int)[kept]
    if not scored_labels.size or scored_labels.min() == scored_labels.max():
        raise LabelledDataError(
            f"after leaving out {len(excluded)} file(s) that cannot be scored, {folder} no longer has images of both "
            "classes"
        )
    return scored_labels, assessed.probabilities[kept], excluded


def folder_metrics(
    classifier: Classifier,
    spec: PreprocessSpec,
    threshold: float,
    folder: Path,
    rounds: int = 1000,
    limits: ImageLimits = ImageLimits(),
) -> dict[str, Any]:
    """Metrics with 95% intervals on FOLDER/NORMAL and FOLDER/PNEUMONIA; files the worker would not score are
    listed under `excluded` (those the gate refused are counted in `gate_refused` too), and both classes must
    remain."""
    labels, scores, excluded = score_labelled_folder(classifier, spec, folder, limits)
    return {
        **binary_metrics(labels, scores, threshold),
        "gate_refused": sum(1 for file in excluded if file.get("gate")),
        "ci95": bootstrap_intervals(labels, scores, threshold, rounds),
        "bootstrap_rounds": rounds,
        "excluded": excluded,
    }
