"""Threshold choice, metrics with bootstrap intervals, and calibration error (scikit-learn)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

from screening.errors import InvalidRequest
from screening.model.figures import BinaryMetrics, Confusion


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float = 0.95) -> float:
    """The highest threshold at which at least `target` of the positives score >= it: a probability strictly
    between 0 and 1 even where the scores saturate (a separable validation side at a small temperature gives its
    pneumonias a probability of exactly 1.0, and a threshold of 1.0 would be no operating point)."""
    positives = np.sort(scores[labels == 1])[::-1]
    if positives.size == 0:
        raise InvalidRequest("no positive examples to choose a threshold on")
    needed = math.ceil(target * positives.size)
    return float(np.clip(positives[needed - 1], np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0)))


def threshold_for_every_group(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, target: float) -> float:
    """The highest threshold at which every group that has positives reaches `target` sensitivity."""
    return min(
        threshold_for_sensitivity(labels[groups == group], scores[groups == group], target)
        for group in sorted(set(groups))
        if labels[groups == group].any()
    )


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray) -> BinaryMetrics:
    """Metrics at the threshold (one for every image, or one each: their operating points); ROC AUC is None for
    images of one class (a source that gives pneumonia only). `threshold` is recorded where it is one."""
    predicted = (scores >= threshold).astype(int)
    uniform = np.unique(threshold)
    tn, fp, fn, tp = (int(count) for count in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    return BinaryMetrics(
        images=int(labels.size),
        roc_auc=float(roc_auc_score(labels, scores)) if 0 < labels.sum() < labels.size else None,
        accuracy=float((tp + tn) / labels.size),
        sensitivity=float(tp / (tp + fn)) if tp + fn else None,
        specificity=float(tn / (tn + fp)) if tn + fp else None,
        precision=float(tp / max(tp + fp, 1)),
        f1=float(2 * tp / max(2 * tp + fp + fn, 1)),
        ece=expected_calibration_error(labels, scores),
        threshold=float(uniform[0]) if uniform.size == 1 else None,
        confusion=Confusion(tn=tn, fp=fp, fn=fn, tp=tp),
    )


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Mean |observed pneumonia rate - mean probability| over equal-width probability bins, by bin size."""
    which = np.minimum((scores * bins).astype(int), bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            error += members.mean() * abs(labels[members].mean() - scores[members].mean())
    return float(error)


BOOTSTRAPPED = ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "ece")


def bootstrap_intervals(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, rounds: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals from resampling images with replacement (both classes kept in each draw)."""
    rng = np.random.default_rng(seed)
    thresholds = np.broadcast_to(np.asarray(threshold, np.float64), labels.shape)
    draws: dict[str, list[float]] = {name: [] for name in BOOTSTRAPPED}
    while len(draws["accuracy"]) < rounds:
        pick = rng.integers(0, labels.size, labels.size)
        if labels[pick].min() == labels[pick].max():
            continue
        metrics = binary_metrics(labels[pick], scores[pick], thresholds[pick])
        for name in BOOTSTRAPPED:
            draws[name].append(getattr(metrics, name))
    return {name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for name, v in draws.items()}


def with_intervals(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, rounds: int = 1000
) -> BinaryMetrics:
    """binary_metrics, and their 95% bootstrap intervals where both classes are there."""
    metrics = binary_metrics(labels, scores, threshold)
    if 0 < labels.sum() < labels.size:
        return replace(metrics, ci95=bootstrap_intervals(labels, scores, threshold, rounds))
    return metrics


def metrics_by_source(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, sources: np.ndarray, intervals: bool
) -> dict[str, BinaryMetrics]:
    """binary_metrics per source and per top-level source ("adult" for "adult/NIH ChestX-ray14" and its siblings),
    with 95% bootstrap intervals where both classes are there, if asked."""
    thresholds = np.broadcast_to(np.asarray(threshold, np.float64), labels.shape)
    top_level = np.array([source.split("/")[0] for source in sources])
    by_source = {}
    for group in sorted(set(sources) | set(top_level)):
        members = (sources == group) | (top_level == group)
        found = labels[members], scores[members], thresholds[members]
        by_source[group] = with_intervals(*found) if intervals else binary_metrics(*found)
    return by_source
