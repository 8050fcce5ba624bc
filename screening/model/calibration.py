"""From the network's logit to a probability: temperature scaling, one number fitted on validation data.

Dividing the logit by the temperature leaves the ranking (ROC AUC) unchanged and makes a
probability mean what it says. This is the only place a logit becomes a probability.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit


def probabilities(logits: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """`temperature`: one for every logit, or one each (each image at its population's operating point)."""
    return np.asarray(expit(np.asarray(logits, np.float64) / temperature), np.float64)


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`."""
    z = np.asarray(logits, np.float64)

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = z / np.exp(log_temperature)
        return float(-np.mean(labels * log_expit(scaled) + (1 - labels) * log_expit(-scaled)))

    return float(np.exp(minimize_scalar(negative_log_likelihood, bounds=(-4, 4), method="bounded").x))
