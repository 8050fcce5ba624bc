"""The applicability gate: is this a frontal chest radiograph of the kind the model was trained for?

A logistic regression on the classifier's own pooled backbone features (the 2,048 numbers its score
is computed from), so it costs a dot product per image and judges exactly what the model saw. It is
fitted with each model version (training.gate) and stored in its artifact; an image it refuses gets
no probability and no flag. Backend-free: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GATE_VERSION = "frontal-cxr-gate/1"


@dataclass(frozen=True)
class ApplicabilityGate:
    mean: np.ndarray  # the features are standardised with these before the regression
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float  # a score below it: not a frontal chest radiograph, refused
    version: str = GATE_VERSION

    def scores(self, features: np.ndarray) -> np.ndarray:
        """P(frontal chest radiograph) for each row of pooled backbone features."""
        z = ((features.astype(np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def refuses(self, scores: np.ndarray) -> np.ndarray:
        return scores < self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        """What the artifact's gate.npz holds (the threshold and version are in the manifest)."""
        return {"mean": self.mean, "scale": self.scale, "weights": self.weights, "bias": np.array([self.bias])}

    @classmethod
    def from_stored(cls, described: dict[str, Any], arrays: dict[str, np.ndarray]) -> ApplicabilityGate:
        """From the manifest's `gate` entry and the arrays of gate.npz; KeyError or ValueError when they do not fit."""
        gate = cls(
            mean=arrays["mean"].astype(np.float64),
            scale=arrays["scale"].astype(np.float64),
            weights=arrays["weights"].astype(np.float64),
            bias=float(arrays["bias"][0]),
            threshold=float(described["threshold"]),
            version=str(described["version"]),
        )
        if not gate.mean.shape == gate.scale.shape == gate.weights.shape or gate.version != GATE_VERSION:
            raise ValueError(f"not a {GATE_VERSION} gate")
        return gate


def refusal_reason(score: float) -> str:
    """What a refused image's row says (coded: no text from the file)."""
    return f"not a frontal chest radiograph (gate score {score:.2f})"
