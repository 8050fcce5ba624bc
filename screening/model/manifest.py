"""The model manifest: what an artifact, the registry, the model card and retraining all read about a version.

Backend-free, so the CLI reads manifests without loading Keras.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FORMAT = "screening-model/1"
NON_COMMERCIAL = re.compile(r"(^|[\s-])NC([\s-]|$)")  # CC BY-NC-SA 4.0, CC BY-NC-ND, ...


def non_commercial(licence: str | None) -> bool:
    """A Creative Commons licence with the NonCommercial term (as a data manifest names a file's licence)."""
    return licence is not None and NON_COMMERCIAL.search(licence) is not None


@dataclass(frozen=True)
class Architecture:
    """ResNet50 (no top, average-pooled) -> dense -> dropout -> one logit; `members` such networks side by side, their
    logits averaged, for an ensemble."""

    backbone: str = "resnet50"
    head_units: int = 128
    dropout: float = 0.3
    members: int = 1


@dataclass(frozen=True)
class ModelManifest:
    name: str
    architecture: Architecture
    preprocessing: dict[str, Any]  # an imaging.preprocess.PreprocessSpec, as stored
    threshold: float  # on calibrated probabilities: at or above it, an image is flagged
    temperature: float = 1.0  # the logit is divided by it before the sigmoid
    created_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)
    data_manifest: dict[str, Any] = field(default_factory=dict)
    weight_names: list[str] = field(default_factory=list)
    # the applicability gate (model.gate): its version, threshold and how it was fitted and tested; None for a
    # version released without one (its arrays are in the artifact's gate.npz)
    gate: dict[str, Any] | None = None
    # operating points per population (model.population): {"points": {"child": {"threshold", "temperature", ...},
    # "adult": {...}}, "estimate": the age-group estimate's settings and test figures}; None: one point, the threshold
    # and temperature above, for every image. With them, those two are the more sensitive population's point.
    populations: dict[str, Any] | None = None
    artifact_sha256: str | None = None  # known once the artifact is written; the file itself cannot hold it
    format: str = FORMAT

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelManifest:
        """Raises TypeError or ValueError on a manifest that does not describe a model this code can build."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        kept["architecture"] = Architecture(**kept.get("architecture", {}))
        kept["threshold"] = float(kept["threshold"])
        kept["temperature"] = float(kept.get("temperature", 1.0))
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def validation_metrics(self) -> dict[str, Any]:
        return self.metrics.get("validation", {})

    def validation_hashes(self) -> list[str]:
        """SHA-256 of every image of the validation split, in the order the manifest lists them."""
        return [row["sha256"] for row in self.data_manifest.get("files", []) if row["split"] == "validation"]
