"""Threshold choice and the metrics that go into a model version's record (scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float = 0.95) -> float:
    """The highest threshold at which at least `target` of the positives score >= it."""
    positives = np.sort(scores[labels == 1])[::-1]
    if positives.size == 0:
        raise ValueError("no positive examples to choose a threshold on")
    needed = math.ceil(target * positives.size)
    return float(positives[needed - 1])


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "images": int(labels.size),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "accuracy": float((tp + tn) / labels.size),
        "sensitivity": float(tp / max(tp + fn, 1)),
        "specificity": float(tn / max(tn + fp, 1)),
        "precision": float(tp / max(tp + fp, 1)),
        "threshold": float(threshold),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
