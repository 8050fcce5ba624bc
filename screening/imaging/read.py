"""One entry point for every supported file: bytes in, a grayscale radiograph out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from screening.imaging.dicom import read_xray_dicom
from screening.imaging.errors import NotScreenable, Unreadable
from screening.imaging.raster import read_raster
from screening.imaging.sniff import sniff_kind


@dataclass(frozen=True)
class Radiograph:
    kind: str
    pixels: np.ndarray  # one channel, higher = brighter


def decode_radiograph(data: bytes, max_pixels: int) -> Radiograph:
    if not data:
        raise Unreadable("empty file")
    kind = sniff_kind(data[:132])
    if kind is None:
        raise NotScreenable("not a JPEG, PNG or DICOM file")
    if kind == "dicom":
        return Radiograph(kind, read_xray_dicom(data, max_pixels))
    return Radiograph(kind, read_raster(data, kind, max_pixels))
