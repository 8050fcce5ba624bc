"""One entry point for every supported file: bytes in, a grayscale radiograph out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from screening.hashing import sha256_hex
from screening.imaging.dicom import read_xray_dicom
from screening.imaging.errors import NotScreenable, Unreadable
from screening.imaging.raster import read_raster
from screening.imaging.sniff import SNIFF_BYTES, sniff_kind


@dataclass(frozen=True)
class Radiograph:
    kind: str
    pixels: np.ndarray  # one channel, higher = brighter
    note: str | None = None  # how it was read when that departs from the file's own instructions
    age_years: float | None = None  # the patient's age at the study, where a DICOM header gives a valid one

    def pixel_sha256(self) -> str:
        """Identity of the decoded image: the same pixels in any encoding get the same hash."""
        return sha256_hex(f"{self.pixels.dtype}{self.pixels.shape}".encode(), np.ascontiguousarray(self.pixels).data)


def decode_radiograph(data: bytes, max_pixels: int, voi: int = 0) -> Radiograph:
    """`voi`: a DICOM file's VOI window or LUT to apply (`dicom.voi_presets`); the first unless a reader picks."""
    if not data:
        raise Unreadable("empty file")
    kind = sniff_kind(data[:SNIFF_BYTES])
    if kind is None:
        raise NotScreenable("not a JPEG, PNG or DICOM file")
    if kind == "dicom":
        dicom = read_xray_dicom(data, max_pixels, voi)
        return Radiograph(kind, dicom.pixels, dicom.note, dicom.age_years)
    return Radiograph(kind, read_raster(data, kind, max_pixels))
