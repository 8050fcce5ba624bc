"""The fine-tuning's augmentation: geometry, then acquisition (another scanner, exposure or hospital)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from screening.model.recipe import TrainingConfig


@keras.saving.register_keras_serializable(package="screening")
class RandomGamma(keras.layers.Layer):
    """out = 255 * (in / 255) ** gamma, gamma = exp(u), u uniform in [-limit, limit], per image (training only)."""

    def __init__(self, limit: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit, self.generator = limit, keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        gamma = keras.ops.exp(keras.random.uniform(shape, -self.limit, self.limit, seed=self.generator))
        return 255.0 * keras.ops.power(keras.ops.clip(images / 255.0, 0.0, 1.0), gamma)


def augmentation(config: TrainingConfig) -> keras.Sequential:
    """Geometry (rotation, shift, shear, zoom; a flip only on request), then acquisition: exposure, contrast,
    gamma, blur or sharpening, noise. Each is active only in training, and only when its setting is not 0."""
    layers: list[keras.layers.Layer] = [
        keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="constant"),
        keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="constant"),
        keras.layers.RandomShear(config.shear, config.shear, fill_mode="constant"),
        keras.layers.RandomZoom(config.zoom, fill_mode="constant"),
    ]
    optional: list[tuple[float, Callable[[], keras.layers.Layer]]] = [
        (config.horizontal_flip, lambda: keras.layers.RandomFlip("horizontal")),
        (config.brightness, lambda: keras.layers.RandomBrightness(config.brightness)),
        (config.contrast, lambda: keras.layers.RandomContrast(config.contrast)),
        (config.gamma, lambda: RandomGamma(config.gamma, seed=config.seed)),
        (config.blur_sigma, lambda: keras.layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=config.blur_sigma)),
        (config.sharpness, lambda: keras.layers.RandomSharpness(config.sharpness)),
    ]
    layers += [make() for wanted, make in optional if wanted]
    if config.noise_std:  # Keras' GaussianNoise takes a standard deviation of at most 1: on the 0-1 scale
        scale = keras.layers.Rescaling(1 / 255), keras.layers.Rescaling(255)
        layers += [scale[0], keras.layers.GaussianNoise(config.noise_std / 255, seed=config.seed), scale[1]]
    return keras.Sequential(layers)
