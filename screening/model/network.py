"""The classifier's graph: uint8-range image -> ImageNet normalisation -> ResNet50 -> dense -> dropout -> logit.

The normalisation is a layer of the graph (as in Keras' transfer-learning guide), so no caller can
forget it; the network ends in a logit, and the sigmoid with the version's temperature is applied
in one place (model.calibration). An artifact stores weights only: the graph is rebuilt from its
Architecture, so artifacts written when the head ended in a sigmoid load unchanged (a sigmoid has
no weights).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from screening.model.artifact import ArtifactError, compact, read_artifact, write_artifact
from screening.model.gate import ApplicabilityGate
from screening.model.manifest import Architecture, ModelManifest

INPUT_SIZE = 224
FEATURES = 2048
# keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, then these means subtracted.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="screening")
class ImageNetNormalisation(keras.layers.Layer):
    """What the ImageNet ResNet50 weights were trained on: BGR channel order, mean-centred, 0-255 scale."""

    def call(self, images):  # noqa: ANN001, ANN201
        bgr = keras.ops.flip(keras.ops.cast(images, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def build_backbone(imagenet: dict[str, np.ndarray] | None = None, include_top: bool = False) -> keras.Model:
    """ResNet50 on normalised input; with `imagenet` arrays (from weights.load_imagenet_weights) set by layer name."""
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


def with_normalisation(*networks: keras.Model, name: str | None = None) -> keras.Model:
    """The `networks` in sequence, taking 0-255 RGB images (any numeric dtype) instead of normalised ones."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    outputs = ImageNetNormalisation(name="imagenet_normalisation")(inputs)
    for network in networks:
        outputs = network(outputs)
    return keras.Model(inputs, outputs, name=name)


def build_head(architecture: Architecture) -> keras.Model:
    # Fixed layer names: weight paths must not depend on how many models this process built before.
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(architecture.head_units, activation="relu", name="hidden"),
            keras.layers.Dropout(architecture.dropout, name="dropout"),
            # float32 under a mixed policy too: the logit feeds a sigmoid that must tell 0.999 from 0.9999.
            keras.layers.Dense(1, name="pneumonia", dtype="float32"),
        ],
        name="head",
    )


def build_classifier(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """0-255 RGB image -> the pneumonia logit. Backbone and head stay separately trainable."""
    return with_normalisation(backbone, head, name="pneumonia_classifier")


def with_features(classifier: keras.Model) -> keras.Model:
    """The classifier's logit followed by the pooled backbone features it came from, as one row per image (column 0
    the logit): one pass gives the score and what the applicability gate reads. Shares the classifier's weights."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    normalised = classifier.get_layer("imagenet_normalisation")(inputs)
    pooled = classifier.get_layer("resnet50")(normalised)
    logit = classifier.get_layer("head")(pooled)
    features = keras.ops.cast(pooled, "float32")  # under a mixed policy the backbone computes in half precision
    return keras.Model(inputs, keras.ops.concatenate([logit, features], axis=-1), name="classifier_with_features")


def as_stored(model: keras.Model) -> None:
    """Round the weights the way the artifact stores them, so measured metrics match the file."""
    model.set_weights([compact(w).astype(np.float32) for w in model.get_weights()])


def save_classifier(
    model: keras.Model, manifest: ModelManifest, path: Path, gate: ApplicabilityGate | None = None
) -> str:
    """Write the artifact (the manifest gets the weights' names) and return its SHA-256."""
    named = replace(manifest, weight_names=[v.path for v in model.weights])
    return write_artifact(path, named, model.get_weights(), gate)


def load_classifier(path: Path, expected_sha256: str | None = None) -> tuple[keras.Model, ModelManifest]:
    manifest, arrays = read_artifact(path, expected_sha256)
    model = build_classifier(build_backbone(), build_head(manifest.architecture))
    expected = [tuple(v.shape) for v in model.weights]
    if [v.path for v in model.weights] != manifest.weight_names or [a.shape for a in arrays] != expected:
        raise ArtifactError(f"{path.name}: weights do not match architecture {manifest.architecture}")
    model.set_weights(arrays)
    return model, manifest
