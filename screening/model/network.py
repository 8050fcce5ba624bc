"""The classifier's graph: uint8-range image -> ImageNet normalisation -> ResNet50 -> dense -> dropout -> logit.

The normalisation is a layer of the graph (as in Keras' transfer-learning guide), so no caller can
forget it; the network ends in a logit, and the sigmoid with the version's temperature is applied
in one place (model.calibration). An artifact stores weights only: the graph is rebuilt from its
Architecture, so artifacts written when the head ended in a sigmoid load unchanged (a sigmoid has
no weights).

An ensemble is the same graph with several members (backbone and head) side by side on the one
normalised input, and the mean of their logits as its logit. The first member keeps the single
network's layer names, so what reads "resnet50" (the gate's features) reads the first member.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from screening.model.artifact import ArtifactError, compact, read_artifact, write_artifact
from screening.model.gate import ApplicabilityGate
from screening.model.manifest import Architecture, ModelManifest
from screening.model.population import AgeGroupEstimate

# The graph takes any image size: the version's preprocessing spec fixes it (224 for ImageNet's own, larger for
# finer detail); average pooling makes the head's features the same width whatever the size.
ANY_SIZE = (None, None, 3)
IMAGENET_SIZE = (224, 224, 3)  # ImageNet's classification top needs the size it was trained at
FEATURES = 2048
# keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, then these means subtracted.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="screening")
class ImageNetNormalisation(keras.layers.Layer):
    """What the ImageNet ResNet50 weights were trained on: BGR channel order, mean-centred, 0-255 scale."""

    def call(self, images: Any) -> Any:
        bgr = keras.ops.flip(keras.ops.cast(images, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def member_names(index: int) -> tuple[str, str]:
    """The layer names of member `index`'s backbone and head: the first member's are the single network's."""
    return ("resnet50", "head") if index == 0 else (f"resnet50_{index + 1}", f"head_{index + 1}")


def build_backbone(
    imagenet: dict[str, np.ndarray] | None = None, include_top: bool = False, name: str = "resnet50"
) -> keras.Model:
    """ResNet50 on normalised input; with `imagenet` arrays (from weights.load_imagenet_weights) set by layer name."""
    backbone = keras.applications.ResNet50(
        weights=None,
        include_top=include_top,
        pooling=None if include_top else "avg",
        input_shape=IMAGENET_SIZE if include_top else ANY_SIZE,
        name=name,
    )
    if imagenet is not None:
        for layer in backbone.layers:
            if layer.weights:
                layer.set_weights([imagenet[variable.path] for variable in layer.weights])
    return backbone


def with_normalisation(*networks: keras.Model, name: str | None = None) -> keras.Model:
    """The `networks` in sequence, taking 0-255 RGB images (any numeric dtype) instead of normalised ones."""
    inputs = keras.Input(ANY_SIZE)
    outputs = ImageNetNormalisation(name="imagenet_normalisation")(inputs)
    for network in networks:
        outputs = network(outputs)
    return keras.Model(inputs, outputs, name=name)


def build_head(architecture: Architecture, name: str = "head") -> keras.Model:
    # Fixed layer names: weight paths must not depend on how many models this process built before.
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(architecture.head_units, activation="relu", name="hidden"),
            keras.layers.Dropout(architecture.dropout, name="dropout"),
            # float32 under a mixed policy too: the logit feeds a sigmoid that must tell 0.999 from 0.9999.
            keras.layers.Dense(1, name="pneumonia", dtype="float32"),
        ],
        name=name,
    )


Member = tuple[keras.Model, keras.Model]  # a backbone and the head on its pooled features


def _logit_and_features(members: list[Member], normalised: Any) -> tuple[Any, Any]:
    """The members' mean logit (a single network's own) and the first member's pooled features."""
    pooled = [backbone(normalised) for backbone, _ in members]
    logits = [head(features) for (_, head), features in zip(members, pooled, strict=True)]
    logit = logits[0] if len(logits) == 1 else keras.layers.Average(name="ensemble", dtype="float32")(logits)
    return logit, pooled[0]


def build_classifier(members: list[Member]) -> keras.Model:
    """0-255 RGB image -> the pneumonia logit. Backbones and heads stay separately trainable."""
    inputs = keras.Input(ANY_SIZE)
    logit, _ = _logit_and_features(members, ImageNetNormalisation(name="imagenet_normalisation")(inputs))
    return keras.Model(inputs, logit, name="pneumonia_classifier")


def members_of(classifier: keras.Model) -> list[Member]:
    """The (backbone, head) layers of a classifier, first member first."""
    names = {layer.name for layer in classifier.layers}
    members: list[Member] = []
    while (pair := member_names(len(members)))[0] in names:
        members.append((classifier.get_layer(pair[0]), classifier.get_layer(pair[1])))
    return members


def with_features(classifier: keras.Model) -> keras.Model:
    """The classifier's logit followed by the pooled backbone features of its first member, as one row per image
    (column 0 the logit): one pass gives the score and what the applicability gate reads. Shares the weights."""
    inputs = keras.Input(ANY_SIZE)
    normalised = classifier.get_layer("imagenet_normalisation")(inputs)
    logit, pooled = _logit_and_features(members_of(classifier), normalised)
    features = keras.ops.cast(pooled, "float32")  # under a mixed policy the backbone computes in half precision
    return keras.Model(inputs, keras.ops.concatenate([logit, features], axis=-1), name="classifier_with_features")


def _untrained_members(architecture: Architecture, count: int) -> list[Member]:
    """`count` members of `architecture`, named as an ensemble names them, their weights still to be set."""
    return [
        (build_backbone(name=backbone), build_head(architecture, name=head))
        for backbone, head in map(member_names, range(count))
    ]


def build_ensemble(networks: list[keras.Model], architecture: Architecture) -> keras.Model:
    """One classifier whose logit is the mean of the `networks`' (each a classifier of `architecture`, loaded), their
    weights copied member by member."""
    fresh = _untrained_members(architecture, len(networks))
    for (backbone, head), network in zip(fresh, networks, strict=True):
        (trained_backbone, trained_head), *_ = members_of(network)
        backbone.set_weights(trained_backbone.get_weights())
        head.set_weights(trained_head.get_weights())
    return build_classifier(fresh)


def as_stored(model: keras.Model) -> None:
    """Round the weights the way the artifact stores them, so measured metrics match the file."""
    model.set_weights([compact(w).astype(np.float32) for w in model.get_weights()])


def save_classifier(
    model: keras.Model,
    manifest: ModelManifest,
    path: Path,
    gate: ApplicabilityGate | None = None,
    estimate: AgeGroupEstimate | None = None,
) -> str:
    """Write the artifact (the manifest gets the weights' names) and return its SHA-256."""
    named = replace(manifest, weight_names=[v.path for v in model.weights])
    return write_artifact(path, named, model.get_weights(), gate, estimate)


def load_classifier(path: Path, expected_sha256: str | None = None) -> tuple[keras.Model, ModelManifest]:
    manifest, arrays = read_artifact(path, expected_sha256)
    model = build_classifier(_untrained_members(manifest.architecture, manifest.architecture.members))
    expected = [tuple(v.shape) for v in model.weights]
    if [v.path for v in model.weights] != manifest.weight_names or [a.shape for a in arrays] != expected:
        raise ArtifactError(f"{path.name}: weights do not match architecture {manifest.architecture}")
    model.set_weights(arrays)
    return model, manifest
