"""A training run's checkpoints: every weights file the run writes is sealed with its SHA-256, and a resumed run
takes no file but the ones it sealed, and no weights that are not finite numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from screening.errors import ScreeningError
from screening.hashing import sha256_hex


class CheckpointRefused(ScreeningError):
    pass


def _seal_of(weights: Path) -> Path:
    return weights.with_name(weights.name + ".sha256")


def seal(weights: Path) -> None:
    """Record the SHA-256 of a weights file this run wrote, so that a resumed run uses no other."""
    _seal_of(weights).write_text(sha256_hex(weights))


def check_seal(weights: Path) -> None:
    seal_file = _seal_of(weights)
    if not seal_file.exists() or seal_file.read_text().strip() != sha256_hex(weights):
        raise CheckpointRefused(
            f"{weights.name} is not the checkpoint this run wrote (its SHA-256 differs from the one recorded): "
            f"remove {weights.parent} to train from the start"
        )


def load_sealed(model: keras.Model, weights: Path) -> None:
    """Load a checkpoint only if it is the file this run sealed, and only finite weights."""
    check_seal(weights)
    model.load_weights(weights)
    require_finite(model, weights.name)


def require_finite(model: keras.Model, what: str) -> None:
    if not all(np.isfinite(keras.ops.convert_to_numpy(weight)).all() for weight in model.weights):
        raise CheckpointRefused(f"{what} holds weights that are not finite numbers: a run cannot go on from it")


class SealBest(keras.callbacks.Callback):
    """After each epoch: seal the best weights ModelCheckpoint may just have written. Before training: refuse a
    restored state (BackupAndRestore's) whose weights are not finite."""

    def __init__(self, best: Path) -> None:
        super().__init__()
        self.best = best

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        require_finite(self.model, "the interrupted run's saved state")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seal(self.best)
