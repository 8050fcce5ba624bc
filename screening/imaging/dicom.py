"""DICOM radiographs, in the spirit of torchxrayvision's read_xray_dcm: every rule on one screen.

Screened: Modality CR/DX/DR, one frame, MONOCHROME1/2, body part chest (or not stated).
Pixels: Modality LUT/rescale -> VOI LUT or window -> inverted when MONOCHROME1 or
PresentationLUTShape INVERSE (never twice) -> scaled to 0..1 over the range that the stored
bit depth allows after those LUTs, so "air dark, bone bright" holds for every file.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from screening.imaging.errors import NotScreenable, Unreadable

SCREENED_MODALITIES = {"CR", "DX", "DR"}
CHEST_BODY_PARTS = {"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_LAT", "CHEST_PA"}
MONOCHROME = {"MONOCHROME1", "MONOCHROME2"}


@dataclass(frozen=True)
class DicomIdentity:
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None


def identity_of(dataset: pydicom.Dataset) -> DicomIdentity:
    def uid(keyword: str) -> str | None:
        return str(dataset[keyword].value) if keyword in dataset else None

    return DicomIdentity(uid("StudyInstanceUID"), uid("SeriesInstanceUID"), uid("SOPInstanceUID"))


def _check_screenable(ds: pydicom.Dataset, max_pixels: int) -> None:
    modality = str(ds.get("Modality", "") or "missing")
    if modality not in SCREENED_MODALITIES:
        raise NotScreenable(f"modality {modality} is not a radiograph (CR, DX and DR are screened)")
    body_part = str(ds.get("BodyPartExamined", "") or "").upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise NotScreenable(f"body part {body_part} is not a chest")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise NotScreenable(f"multi-frame object ({ds.NumberOfFrames} frames)")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in MONOCHROME:
        raise NotScreenable(f"colour image ({photometric or 'no PhotometricInterpretation'})")
    if "PixelData" not in ds:
        raise NotScreenable("no pixel data")
    pixels = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0))
    if pixels > max_pixels:
        raise NotScreenable(f"image too large: {ds.Columns}x{ds.Rows} pixels exceeds the limit of {max_pixels}")


def _stored_range(ds: pydicom.Dataset) -> np.ndarray:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
    return np.array([0, 2**bits - 1])


def read_xray_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """Return the radiograph as float32 in 0..1 (0 = black)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as error:  # pydicom raises many types for a broken file
        raise Unreadable(f"not a readable DICOM file ({type(error).__name__})") from None
    if any("End of file reached" in str(warning.message) for warning in caught):
        raise Unreadable("truncated DICOM file: it ends before its data set does")  # pydicom only warns
    if "TransferSyntaxUID" not in ds.file_meta:
        raise Unreadable("not a readable DICOM file (no transfer syntax in its meta header)")
    _check_screenable(ds, max_pixels)
    try:
        stored = ds.pixel_array
    except Exception as error:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
        raise Unreadable(
            f"pixel data could not be decoded ({getattr(syntax, 'name', syntax)}: {type(error).__name__})"
        ) from None

    def to_display(values: np.ndarray) -> np.ndarray:
        return apply_voi_lut(apply_modality_lut(values, ds), ds).astype(np.float32)

    pixels = to_display(stored)
    low, high = np.sort(to_display(_stored_range(ds)))
    if ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
        pixels = low + high - pixels
    pixels = np.clip((pixels - low) / max(high - low, 1e-6), 0.0, 1.0)
    return pixels.astype(np.float32)
