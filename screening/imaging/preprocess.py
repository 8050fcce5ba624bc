"""The preprocessing spec: named and versioned, stored with every model version it trained."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from screening.errors import InvalidRequest
from screening.imaging.errors import NotScreenable

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class PreprocessSpec:
    """grayscale -> min-max -> Gaussian blur -> median -> CLAHE -> gamma -> 3 channels -> stretched resize.

    The published seed pipeline. Resizing stretches (no aspect ratio kept) because the
    training set was stretched to 224x224. Gamma follows the OpenCV recipe
    out = 255 * (in / 255) ** (1 / gamma). The ImageNet normalisation the backbone needs
    (keras' resnet50.preprocess_input) belongs to the model, not to this spec.
    """

    name: str = "cxr-seed-v1"
    gaussian_kernel: int = 3
    median_kernel: int = 3
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    gamma: float = 0.7
    size: int = 224
    interpolation: str = "area"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessSpec:
        return cls(**values)


_per_thread = threading.local()


def _clahe(spec: PreprocessSpec) -> cv2.CLAHE:
    # One CLAHE object per thread and spec: a shared instance corrupts memory under a thread pool.
    cache = _per_thread.__dict__.setdefault("clahe", {})
    if spec not in cache:
        grid = (spec.clahe_tile_grid, spec.clahe_tile_grid)
        cache[spec] = cv2.createCLAHE(clipLimit=spec.clahe_clip_limit, tileGridSize=grid)
    return cache[spec]


def gamma_table(gamma: float) -> np.ndarray:
    """OpenCV's gamma recipe as a lookup table: out = 255 * (in / 255) ** (1 / gamma)."""
    return np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma), 0, 255).astype(np.uint8)


def to_8bit(grayscale: np.ndarray) -> np.ndarray:
    """Min-max to uint8 over the image's own range: the first step of every spec, and the film as it is shown."""
    low, high = float(grayscale.min()), float(grayscale.max())
    if high <= low:
        raise NotScreenable("blank image: every pixel has the same value")
    return ((grayscale.astype(np.float32) - low) * (255.0 / (high - low))).astype(np.uint8)


def preprocess(grayscale: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn one grayscale radiograph (any numeric dtype) into the uint8 HxWx3 image the model sees."""
    image = to_8bit(grayscale)
    if spec.gaussian_kernel > 1:
        image = cv2.GaussianBlur(image, (spec.gaussian_kernel, spec.gaussian_kernel), 0)
    if spec.median_kernel > 1:
        image = cv2.medianBlur(image, spec.median_kernel)
    if spec.clahe_clip_limit > 0:
        image = _clahe(spec).apply(image)
    if spec.gamma != 1.0:
        image = cv2.LUT(image, gamma_table(spec.gamma))
    image = cv2.resize(image, (spec.size, spec.size), interpolation=INTERPOLATIONS[spec.interpolation])
    return np.repeat(image[:, :, None], 3, axis=2)


# The specs a training run can name (TrainingConfig.preprocessing). A model version stores its own spec, so a
# spec added here never changes how an existing version is served.
SPECS = {
    "cxr-seed-v1": PreprocessSpec(),
    # min-max and the stretch to 224 only: the backbone sees films as close to ImageNet's statistics as they come
    "plain-v1": PreprocessSpec(name="plain-v1", gaussian_kernel=1, median_kernel=1, clahe_clip_limit=0.0, gamma=1.0),
}
# plain-v1 at 320 px: twice the pixels for the detail of adult films (512 px here); children's 224-px files upsampled
SPECS["plain-v1-320"] = replace(SPECS["plain-v1"], name="plain-v1-320", size=320)


def named_spec(stored: dict) -> PreprocessSpec:
    """A version's stored spec, accepted only as one of SPECS exactly: a name must say what its parameters do (no
    `plain-v1` with CLAHE), and no parameter can fall outside what was tested (a gamma of -3, a 64-px input).
    ValueError says which part differs."""
    name = stored.get("name")
    if name not in SPECS:
        raise InvalidRequest(f"preprocessing {name!r} is none of {', '.join(SPECS)}")
    expected = SPECS[name].to_dict()
    differing = sorted(key for key in expected.keys() | stored.keys() if stored.get(key) != expected.get(key))
    if differing:
        raise InvalidRequest(f"preprocessing {name!r} with other parameters than its own ({', '.join(differing)})")
    return SPECS[name]
