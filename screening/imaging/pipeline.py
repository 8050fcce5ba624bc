"""The one path from a file to what the model sees: read -> decode -> preprocess.

The worker, training, evaluation, `screen preview` and heatmaps all call these functions, so an
image is prepared the same way wherever it is scored. Each step raises ImageRejected with a
recorded reason for bad input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from screening.config import ImageLimits
from screening.hashing import sha256_hex
from screening.imaging.errors import NotScreenable, Unreadable
from screening.imaging.preprocess import preprocess
from screening.imaging.read import Radiograph, decode_radiograph
from screening.model.preprocessing import PreprocessSpec

FILE_CHANGED = "file changed since it was enqueued (SHA-256 differs); enqueue it again"


@dataclass(frozen=True)
class ModelInput:
    """One image as the model sees it (uint8, size x size x 3, before the in-graph ImageNet normalisation)."""

    kind: str
    image: np.ndarray
    pixel_sha256: str  # of the decoded pixels: the same image in another encoding has the same one
    note: str | None = None  # how it was read when that departs from the file's own instructions
    age_years: float | None = None  # the patient's age at the study, where a DICOM header gives a valid one
    timings_ms: dict[str, float] = field(default_factory=dict)


def read_image_file(path: Path, limits: ImageLimits, expected_sha256: str | None = None) -> bytes:
    """The file's bytes, refusing files too large to hold and, with `expected_sha256`, files changed since."""
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise NotScreenable(f"file too large: {size} bytes exceeds the limit of {limits.max_file_bytes}")
        data = path.read_bytes()
    except OSError as error:
        raise Unreadable(f"cannot read file: {error.strerror or type(error).__name__}") from None
    if expected_sha256 is not None and sha256_hex(data) != expected_sha256:
        raise Unreadable(FILE_CHANGED)
    return data


def prepare(data: bytes, spec: PreprocessSpec, limits: ImageLimits) -> ModelInput:
    """Decode JPEG, PNG or DICOM bytes (imaging.dicom has the rules) and apply the model version's spec."""
    started = time.perf_counter()
    radiograph = decode_radiograph(data, limits.max_image_pixels)
    return prepare_radiograph(radiograph, spec, {"decode": (time.perf_counter() - started) * 1000})


def prepare_radiograph(radiograph: Radiograph, spec: PreprocessSpec, timings_ms: dict | None = None) -> ModelInput:
    """The model version's spec applied to a decoded radiograph."""
    started = time.perf_counter()
    image = preprocess(radiograph.pixels, spec)
    timings = {**(timings_ms or {}), "preprocess": (time.perf_counter() - started) * 1000}
    return ModelInput(radiograph.kind, image, radiograph.pixel_sha256(), radiograph.note, radiograph.age_years, timings)


def read_radiograph(path: Path, limits: ImageLimits = ImageLimits(), expected_sha256: str | None = None) -> Radiograph:
    """The decoded film of a file, for callers that need it as well as the model's input (heatmaps)."""
    return decode_radiograph(read_image_file(path, limits, expected_sha256), limits.max_image_pixels)


def prepare_file(
    path: Path, spec: PreprocessSpec, limits: ImageLimits = ImageLimits(), expected_sha256: str | None = None
) -> ModelInput:
    """`expected_sha256`: the file must still be the one a result or a label is about (the path may hold another)."""
    return prepare(read_image_file(path, limits, expected_sha256), spec, limits)
