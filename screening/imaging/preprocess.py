"""Applying a version's preprocessing spec (model.preprocessing) to a grayscale radiograph."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from screening.imaging.errors import NotScreenable
from screening.model.preprocessing import PreprocessSpec

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


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
    if grayscale.dtype in (np.uint8, np.uint16):  # a JPEG's or PNG's own levels: the same sum, once per level
        table = np.zeros(np.iinfo(grayscale.dtype).max + 1, np.uint8)
        table[int(low) : int(high) + 1] = _scaled(np.arange(int(low), int(high) + 1), low, high)
        return cv2.LUT(grayscale, table) if grayscale.dtype == np.uint8 else table[grayscale]
    return _scaled(grayscale, low, high)


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return ((values.astype(np.float32) - low) * (255.0 / (high - low))).astype(np.uint8)


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
