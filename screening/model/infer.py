"""Batched inference: the one loop that runs a network over many images, and the classifier that uses it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from screening.model.artifact import policy_of, read_age_estimate, read_gate
from screening.model.calibration import probabilities
from screening.model.gate import ApplicabilityGate, refusal_reason
from screening.model.manifest import ModelManifest
from screening.model.network import load_classifier, with_features
from screening.model.population import AgeGroupEstimate, Decision, Known, PopulationPolicy


def predict_batches(network: keras.Model, batches: Iterable[np.ndarray]) -> np.ndarray:
    """The one inference loop: `network` over batches of images as they come, as float32 rows."""
    outputs = [np.asarray(network.predict_on_batch(batch), np.float32) for batch in batches]
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(network.output_shape[1:]), np.float32)


def predict_in_batches(network: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """`network` over N images in memory, `batch_size` at a time."""
    return predict_batches(network, (images[start : start + batch_size] for start in range(0, len(images), batch_size)))


@dataclass(frozen=True)
class Assessment:
    """What the model says of each image: the operating point it was scored at (and why), the calibrated probability
    at that point's temperature, and the gate's score where there is a gate (an image it refuses must be reported
    as not screened, never with the probability)."""

    probabilities: np.ndarray
    decisions: list[Decision]
    gate_scores: np.ndarray | None = None
    gate_threshold: float | None = None
    adult_scores: np.ndarray | None = None  # the age-group estimate's P(adult), where the version has one

    @property
    def refused(self) -> np.ndarray:
        if self.gate_scores is None or self.gate_threshold is None:
            return np.zeros(self.probabilities.shape, bool)
        return self.gate_scores < self.gate_threshold

    def refusal(self, index: int) -> str | None:
        """Why image `index` gets no score (the reason its row records), or None when it is scored."""
        if self.gate_scores is None or not self.refused[index]:
            return None
        return refusal_reason(float(self.gate_scores[index]))


@dataclass
class Classifier:
    model: keras.Model  # 0-255 RGB images in, the pneumonia logit out
    manifest: ModelManifest
    batch_size: int = 32
    gate: ApplicabilityGate | None = None
    estimate: AgeGroupEstimate | None = None

    @classmethod
    def load(
        cls, path: Path, expected_sha256: str | None, batch_size: int = 32, dtype_policy: str = "float32"
    ) -> Classifier:
        """`dtype_policy` "mixed_bfloat16" or "mixed_float16" computes in half precision (for GPUs)."""
        keras.config.set_dtype_policy(dtype_policy)
        model, manifest = load_classifier(path, expected_sha256)
        return cls(model, manifest, batch_size, read_gate(path, manifest), read_age_estimate(path, manifest))

    @cached_property
    def _with_features(self) -> keras.Model:
        return with_features(self.model)

    @cached_property
    def policy(self) -> PopulationPolicy:
        """The version's operating points (one per population, or one for every image)."""
        return policy_of(self.manifest, self.estimate)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The network's logit for each image of an N x S x S x 3 uint8 array (S: the spec's size)."""
        return predict_in_batches(self.model, images, self.batch_size)[:, 0].astype(np.float64)

    def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The logit and the pooled backbone features of each image, from one pass."""
        rows = predict_in_batches(self._with_features, images, self.batch_size)
        return rows[:, 0].astype(np.float64), rows[:, 1:]

    def assess(self, images: np.ndarray, known: Sequence[Known] | None = None) -> Assessment:
        """Each image's operating point (from `known`, else the age-group estimate), its probability there, and the
        applicability gate's score when the version has a gate; one pass of the network."""
        known = list(known) if known is not None else [None] * len(images)
        gate_scores = adult_scores = None
        if self.gate is None and self.estimate is None:
            logits = self.logits(images)
        else:
            logits, features = self.logits_and_features(images)
            gate_scores = self.gate.scores(features) if self.gate else None
            adult_scores = self.estimate.scores(features) if self.estimate else None
        decisions = [
            self.policy.decide(known[i], None if adult_scores is None else float(adult_scores[i]))
            for i in range(len(images))
        ]
        temperatures = np.array([decision.point.temperature for decision in decisions], np.float64)
        return Assessment(
            probabilities(logits, temperatures),
            decisions,
            gate_scores,
            self.gate.threshold if self.gate else None,
            adult_scores,
        )
