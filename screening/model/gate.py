"""The applicability gate: is this a frontal chest radiograph of the kind the model was trained for?

A linear probe (model.probe) on the classifier's own pooled backbone features, fitted with each model version
(training.gate) and stored in its artifact; an image it refuses gets no probability and no flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from screening.errors import InvalidRequest
from screening.model.manifest import GateRecord
from screening.model.probe import LinearProbe

GATE_VERSION = "frontal-cxr-gate/1"


@dataclass(frozen=True)
class ApplicabilityGate(LinearProbe):
    threshold: float = 0.5  # a score below it: not a frontal chest radiograph, refused
    version: str = GATE_VERSION

    def refuses(self, scores: np.ndarray) -> np.ndarray:
        return scores < self.threshold

    @classmethod
    def from_stored(cls, described: GateRecord, arrays: dict[str, np.ndarray]) -> ApplicabilityGate:
        """From the manifest's `gate` entry and the arrays of gate.npz; KeyError or ValueError when they do not fit."""
        if described.version != GATE_VERSION:
            raise InvalidRequest(f"not a {GATE_VERSION} gate")
        return cls(**LinearProbe.stored(arrays), threshold=described.threshold)  # type: ignore[arg-type]


def refusal_reason(score: float) -> str:
    """What a refused image's row says (coded: no text from the file)."""
    return f"not a frontal chest radiograph (gate score {score:.2f})"
