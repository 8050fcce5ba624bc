"""Which Keras backend and which device this process computes on, said out loud at worker start; the backend
loaded without the lines its native runtime writes."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Device:
    backend: str
    accelerator: str | None  # e.g. "gpu: NVIDIA H200", None on the CPU

    def describe(self) -> str:
        return f"Keras backend {self.backend} on {self.accelerator or 'the CPU'}"


def import_backend_quietly() -> str:
    """Import Keras and its backend now, with the lines TensorFlow's native runtime writes straight to file
    descriptor 2 as it loads (absl, oneDNN) silenced: TF_CPP_MIN_LOG_LEVEL does not stop them, and they break
    the output and progress bars of the command that loads a model. Python's own errors still raise. The
    backend's name."""
    if "keras" in sys.modules:  # loaded already: other threads' lines on fd 2 are not to be swallowed
        return str(sys.modules["keras"].backend.backend())
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return str(keras.backend.backend())


def cpu_computes_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 arithmetic of its own (AVX512_BF16 or AMX): there TensorFlow's oneDNN runs a
    mixed_bfloat16 network faster than in float32 (README: throughput), where other CPUs emulate it, slower."""
    try:
        return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo.read_text()) is not None
    except OSError:
        return False


def current_device() -> Device:
    import keras  # the caller decides when a backend may load (after a fork, never before)

    backend = keras.backend.backend()
    return Device(backend, _accelerator(backend))


def _accelerator(backend: str) -> str | None:
    if backend == "jax":
        import jax

        devices = [device for device in jax.devices() if device.platform != "cpu"]
        return f"{devices[0].platform}: {devices[0].device_kind}" if devices else None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {gpus[0].name}" if gpus else None
    if backend == "torch":
        import torch

        return f"gpu: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else None
    return None
