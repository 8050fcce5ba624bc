"""Training data streamed from the files: batches are decoded as the model asks for them, so memory does not
grow with the number of images, and each batch is exactly what the worker would feed the model.

Sources are balanced in one of two ways: every image once per epoch with its balancing weight, or (`draws`) a
fixed number of images drawn per epoch with probability by that weight, unweighted. Drawing spends each
epoch's compute where the weight is (a small source's images are seen often, a large one's a few at a time),
which matters when every image costs a full pass of the backbone."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from screening.config import ImageLimits
from screening.imaging.pipeline import prepare_file
from screening.model.preprocessing import PreprocessSpec
from screening.training.split import Example


class LabelledImages(keras.utils.PyDataset):
    """(images, labels[, weights]) batches of `examples`; reshuffled every epoch when `shuffle`."""

    def __init__(
        self,
        examples: list[Example],
        spec: PreprocessSpec,
        limits: ImageLimits,
        batch_size: int,
        weights: np.ndarray | None = None,
        shuffle: bool = False,
        seed: int = 0,
        workers: int = 2,
        draws: int = 0,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        if draws and weights is None:
            raise ValueError("drawing images needs their weights")
        self.examples, self.spec, self.limits, self.batch_size = examples, spec, limits, batch_size
        self.labels = np.array([example.label for example in examples], np.float32)
        self.weights, self.shuffle, self.draws = weights, shuffle, draws
        self.rng = np.random.default_rng(seed)
        self.order = self._epoch_order() if shuffle or draws else np.arange(len(examples))

    def _epoch_order(self) -> np.ndarray:
        if self.draws:
            assert self.weights is not None
            return self.rng.choice(len(self.examples), self.draws, p=self.weights / self.weights.sum())
        return self.rng.permutation(len(self.examples))

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        examples = [self.examples[i] for i in chosen]  # each refused if its file is no longer the one labelled
        images = np.stack([prepare_file(e.path, self.spec, self.limits, e.sha256).image for e in examples])
        batch = (images.astype(np.float32), self.labels[chosen])
        return batch if self.weights is None or self.draws else (*batch, self.weights[chosen])

    def images(self) -> Any:
        """The images alone, batch by batch, in order (for prediction)."""
        return (self[index][0] for index in range(len(self)))

    def on_epoch_end(self) -> None:
        if self.shuffle or self.draws:
            self.order = self._epoch_order()
