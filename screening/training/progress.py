"""A training phase's progress: one line per epoch, and its history kept on disk for a resumed run."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

Say = Callable[[str], None]  # where a step reports what it did (the CLI prints it)
HISTORY_KEYS = ("loss", "auc", "val_loss", "val_auc")
History = dict[str, list[float]]  # per key above, one value per epoch


class EpochLog(keras.callbacks.Callback):
    """Each epoch in one line: loss, validation AUC, seconds, images per second and the time left; and the
    history so far on disk, so a resumed run reports every epoch."""

    def __init__(self, phase: str, epochs: int, images: int, say: Say, history_file: Path | None) -> None:
        super().__init__()
        self.phase, self.epochs, self.images, self.say, self.history_file = phase, epochs, images, say, history_file
        self.history: History = json.loads(history_file.read_text()) if history_file and history_file.exists() else {}
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.seconds.append(time.perf_counter() - self.started)
        for key in HISTORY_KEYS:
            self.history.setdefault(key, []).append(float(logs[key]))
        if self.history_file:
            self.history_file.write_text(json.dumps(self.history))
        left = statistics.mean(self.seconds) * (self.epochs - epoch - 1)
        self.say(
            f"{self.phase} epoch {epoch + 1}/{self.epochs}: loss {logs['loss']:.4f}, validation AUC "
            f"{logs['val_auc']:.4f}, {self.seconds[-1]:.0f} s, {self.images / self.seconds[-1]:.1f} images/s, "
            f"ETA {left / 60:.1f} min"
        )
