"""Batched inference: uint8 images as preprocessing produced them in, probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from screening.model.calibration import calibrate
from screening.model.network import imagenet_input, load_classifier


@dataclass
class Classifier:
    model: keras.Model
    manifest: dict
    batch_size: int = 32

    @classmethod
    def load(
        cls, path: Path, expected_sha256: str | None, batch_size: int = 32, dtype_policy: str = "float32"
    ) -> Classifier:
        """`dtype_policy` "mixed_bfloat16" or "mixed_float16" computes in half precision (for GPUs)."""
        keras.config.set_dtype_policy(dtype_policy)
        model, manifest = load_classifier(path, expected_sha256)
        return cls(model, manifest, batch_size)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated P(pneumonia) for each image of an N x 224 x 224 x 3 uint8 array."""
        out = [
            self.model.predict_on_batch(imagenet_input(images[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        raw = np.concatenate(out)[:, 0].astype(np.float64) if out else np.zeros(0)
        return calibrate(raw, self.manifest.get("temperature", 1.0))
