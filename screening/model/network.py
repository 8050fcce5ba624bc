"""The classifier's architecture: ResNet50 (no top, average-pooled) -> dense -> dropout -> sigmoid."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from screening.model.artifact import ArtifactError, compact, read_artifact, write_artifact

INPUT_SIZE = 224
FEATURES = 2048


@dataclass(frozen=True)
class Architecture:
    backbone: str = "resnet50"
    head_units: int = 128
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def build_backbone(imagenet: dict[str, np.ndarray] | None = None, include_top: bool = False) -> keras.Model:
    """ResNet50; with `imagenet` arrays (from weights.load_imagenet_weights) set by layer name."""
    backbone = keras.applications.ResNet50(
        weights=None,
        include_top=include_top,
        pooling=None if include_top else "avg",
        input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
    )
    if imagenet is not None:
        for layer in backbone.layers:
            if layer.weights:
                layer.set_weights([imagenet[variable.path] for variable in layer.weights])
    return backbone


def build_head(architecture: Architecture) -> keras.Model:
    # Fixed layer names: weight paths must not depend on how many models this process built before.
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(architecture.head_units, activation="relu", name="hidden"),
            keras.layers.Dropout(architecture.dropout, name="dropout"),
            # float32 under a mixed policy too: a bfloat16 sigmoid rounds every confident case to 1.0.
            keras.layers.Dense(1, activation="sigmoid", name="pneumonia", dtype="float32"),
        ],
        name="head",
    )


def build_classifier(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """Image (ImageNet-normalised) -> P(pneumonia). Backbone and head stay separately trainable."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    return keras.Model(inputs, head(backbone(inputs)), name="pneumonia_classifier")


def imagenet_input(images_uint8: np.ndarray) -> np.ndarray:
    """The normalisation the ImageNet backbone was trained with (caffe mode: BGR, mean-centred)."""
    return keras.applications.resnet50.preprocess_input(images_uint8.astype(np.float32))


def as_stored(model: keras.Model) -> None:
    """Round the weights the way the artifact stores them, so measured metrics match the file."""
    model.set_weights([compact(w).astype(np.float32) for w in model.get_weights()])


def save_classifier(model: keras.Model, manifest: dict, path: Path) -> str:
    return write_artifact(path, manifest, [v.path for v in model.weights], model.get_weights())


def load_classifier(path: Path, expected_sha256: str | None = None) -> tuple[keras.Model, dict]:
    manifest, arrays = read_artifact(path, expected_sha256)
    try:
        architecture = Architecture(**manifest["architecture"])
    except TypeError:
        raise ArtifactError(f"{path.name}: unknown architecture {manifest['architecture']!r}") from None
    model = build_classifier(build_backbone(), build_head(architecture))
    expected = [tuple(v.shape) for v in model.weights]
    if [v.path for v in model.weights] != manifest["weight_names"] or [a.shape for a in arrays] != expected:
        raise ArtifactError(f"{path.name}: weights do not match architecture {architecture}")
    model.set_weights(arrays)
    return model, manifest
