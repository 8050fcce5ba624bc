"""Temperature scaling: one number, fitted on validation data, so that a probability means what it says.

It divides the model's logit; ranking (ROC AUC) is unchanged, probabilities become honest.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

EPSILON = 1e-7


def logits(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities, EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    return expit(logits(probabilities) / temperature)


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`."""
    z = logits(probabilities)

    def negative_log_likelihood(log_temperature: float) -> float:
        q = np.clip(expit(z / np.exp(log_temperature)), EPSILON, 1 - EPSILON)
        return float(-np.mean(labels * np.log(q) + (1 - labels) * np.log(1 - q)))

    return float(np.exp(minimize_scalar(negative_log_likelihood, bounds=(-4, 4), method="bounded").x))
