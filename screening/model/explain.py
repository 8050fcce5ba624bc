"""Grad-CAM (Selvaraju et al. 2017) on the classifier's last convolutional stage: where the evidence sits.

The gradient is the one step Keras 3 has no backend-neutral op for, so `_gradient` asks the active
backend (TensorFlow or JAX) for it; everything else is keras.ops, the same under either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from screening.model.network import members_of

LAST_CONV_STAGE = "conv5_block3_out"  # ResNet50's last residual block: S/32 x S/32 x 2048 for an S x S input


def _gradient(function: Callable[[Any], Any], inputs: Any) -> tuple[Any, Any]:
    """function(inputs) (one value per image) and its gradient with respect to `inputs`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = function(inputs)
        return outputs, tape.gradient(outputs, inputs)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        outputs, pullback = jax.vjp(function, jnp.asarray(inputs))
        return outputs, pullback(jnp.ones_like(outputs))[0]
    raise NotImplementedError(f"Grad-CAM needs the tensorflow or jax backend, not {backend}")


def grad_cam(features: keras.Model, head: Callable[[Any], Any], images: np.ndarray) -> np.ndarray:
    """Heatmaps in [0, 1] on the feature grid (N x h x w) for the logit `head(features(images))`.

    Each feature map is weighted by the mean gradient of the logit over it; the positive part of the
    weighted sum is the evidence for the finding, scaled so that each image's strongest cell is 1."""
    maps = features(keras.ops.convert_to_tensor(images, "float32"))
    logits, gradients = _gradient(lambda activations: keras.ops.sum(head(activations)), maps)
    weights = keras.ops.mean(gradients, axis=(1, 2), keepdims=True)
    cam = keras.ops.relu(keras.ops.sum(weights * maps, axis=-1))
    peak = keras.ops.max(cam, axis=(1, 2), keepdims=True)
    return np.asarray(keras.ops.convert_to_numpy(cam / keras.ops.maximum(peak, 1e-12)), np.float32)


def classifier_grad_cam(classifier: keras.Model, images: np.ndarray) -> np.ndarray:
    """Grad-CAM of the pneumonia logit for 0-255 images (N x S x S x 3): N x S/32 x S/32 in [0, 1]. Of an ensemble,
    the mean of its members' maps, each on its own backbone's last stage, scaled again to a peak of 1."""
    normalise = classifier.get_layer("imagenet_normalisation")
    inputs = keras.Input(classifier.input_shape[1:])
    maps = []
    for backbone, head in members_of(classifier):
        stage = keras.Model(backbone.inputs, backbone.get_layer(LAST_CONV_STAGE).output)
        features = keras.Model(inputs, stage(normalise(inputs)))

        def pooled_logit(grid: Any, head: keras.Model = head) -> Any:
            return head(keras.ops.mean(grid, axis=(1, 2)))

        maps.append(grad_cam(features, pooled_logit, images))
    mean = np.mean(maps, axis=0)
    return np.asarray(mean / np.maximum(mean.max(axis=(1, 2), keepdims=True), 1e-12), np.float32)
