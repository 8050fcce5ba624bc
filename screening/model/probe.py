"""A logistic regression on the classifier's pooled backbone features: what the applicability gate and the age-group
estimate are. It costs one dot product per image and judges exactly what the model saw. Backend-free: numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearProbe:
    mean: np.ndarray  # the features are standardised with these before the regression
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The regression's probability for each row of pooled backbone features."""
        z = ((features.astype(np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))), np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the artifact's .npz holds (thresholds and versions are in the manifest)."""
        return {"mean": self.mean, "scale": self.scale, "weights": self.weights, "bias": np.array([self.bias])}

    @staticmethod
    def stored(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray | float]:
        """The fields from an .npz's arrays; KeyError or ValueError when they do not fit together."""
        fields: dict[str, np.ndarray | float] = {
            name: arrays[name].astype(np.float64) for name in ("mean", "scale", "weights")
        }
        if not fields["mean"].shape == fields["scale"].shape == fields["weights"].shape:  # type: ignore[union-attr]
            raise ValueError("the probe's arrays differ in shape")
        fields["bias"] = float(arrays["bias"][0])
        return fields


def fit_probe(features: np.ndarray, labels: np.ndarray, regularisation: float) -> LinearProbe:
    """A balanced logistic regression on standardised features (`regularisation`: scikit-learn's C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    regression = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=3000)
    regression.fit(scaler.transform(features), labels)
    return LinearProbe(scaler.mean_, scaler.scale_, regression.coef_[0], float(regression.intercept_[0]))
