"""DICOM radiographs, in the spirit of torchxrayvision's read_xray_dcm: every rule on one screen.

Screened: Modality CR/DX/DR, one frame, MONOCHROME1/2, body part chest (or not stated).
Pixels: Modality LUT/rescale -> VOI LUT or window -> inverted when MONOCHROME1 or
PresentationLUTShape INVERSE (never twice) -> scaled to 0..1 over the range that the stored
bit depth allows after those LUTs, so "air dark, bone bright" holds for every file.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from screening.imaging.errors import NotScreenable, Unreadable
from screening.imaging.raster import decode_jpeg_strict

SCREENED_MODALITIES = {"CR", "DX", "DR"}
CHEST_BODY_PARTS = {"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_LAT", "CHEST_PA"}
MONOCHROME = {"MONOCHROME1", "MONOCHROME2"}
# Coded values a reason may quote (DICOM PS3.3 C.7.3.1.1.1 and PS3.16 Annex L); anything else is free text
# that may hold a name ("DOE^JANE") and is never repeated.
KNOWN_MODALITIES = SCREENED_MODALITIES | {
    "CT", "MR", "US", "NM", "PT", "XA", "RF", "MG", "OT", "SC", "IO", "PX", "ES", "XC", "OP", "SR", "KO", "PR",
    "RTIMAGE", "RTDOSE", "RTSTRUCT", "RTPLAN", "SEG", "DOC", "ECG", "BMD", "OCT", "IVUS", "OPT", "SM", "DG",
}  # fmt: skip
KNOWN_BODY_PARTS = {
    "ABDOMEN", "ANKLE", "ARM", "BREAST", "CLAVICLE", "COCCYX", "CSPINE", "ELBOW", "EXTREMITY", "FOOT", "HAND",
    "HEAD", "HEART", "HIP", "JAW", "KNEE", "LEG", "LSPINE", "NECK", "PELVIS", "SHOULDER", "SKULL", "SPINE",
    "SSPINE", "TSPINE", "WHOLEBODY", "WRIST", "FINGER", "TOE", "FEMUR", "HUMERUS", "FOREARM", "SACRUM",
    "ABDOMENPELVIS", "BRAIN", "FACE", "ORBIT", "SINUS", "TMJ", "ZYGOMA", "RIB", "SCAPULA", "STERNUM", "HEEL",
}  # fmt: skip
KNOWN_PHOTOMETRIC = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR", "YBR_PARTIAL_420"}

# pydicom logs each pixel decoder's failure with its traceback before raising; the reason we record is enough.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class DicomIdentity:
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None


def identity_of(dataset: pydicom.Dataset) -> DicomIdentity:
    def uid(keyword: str) -> str | None:
        return str(dataset[keyword].value) if keyword in dataset else None

    return DicomIdentity(uid("StudyInstanceUID"), uid("SeriesInstanceUID"), uid("SOPInstanceUID"))


def _coded(value: str, known: set[str], what: str) -> str:
    return value if value in known else f"an unrecognised {what}"


def _check_screenable(ds: pydicom.Dataset, max_pixels: int) -> None:
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality not in SCREENED_MODALITIES:
        shown = f"modality {modality}" if modality in KNOWN_MODALITIES else "an unrecognised or missing modality"
        raise NotScreenable(f"{shown} is not a radiograph (CR, DX and DR are screened)")
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        shown = f"body part {body_part}" if body_part in KNOWN_BODY_PARTS else "an unrecognised body part"
        raise NotScreenable(f"{shown} is not a chest")
    frames = _number(ds.get("NumberOfFrames", 1))
    if frames > 1:
        raise NotScreenable(f"multi-frame object ({frames} frames)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if _number(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in MONOCHROME:
        raise NotScreenable(f"colour image ({_coded(photometric, KNOWN_PHOTOMETRIC, 'photometric interpretation')})")
    if "PixelData" not in ds:
        raise NotScreenable("no pixel data")
    pixels = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0))
    if pixels > max_pixels:
        raise NotScreenable(f"image too large: {ds.Columns}x{ds.Rows} pixels exceeds the limit of {max_pixels}")


def _number(value: Any) -> int:  # a pydicom element value: int, str, MultiValue, None
    try:
        return int(value or 1)
    except (TypeError, ValueError):
        raise Unreadable("a header field that must be a number is not one") from None


def _stored_range(ds: pydicom.Dataset) -> np.ndarray:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
    return np.array([0, 2**bits - 1])


@dataclass(frozen=True)
class DicomRadiograph:
    pixels: np.ndarray  # float32 in 0..1, 0 = black
    note: str | None  # when its VOI window had to be ignored
    age_years: float | None  # the patient's age at the study, where the header gives a valid one


def read_xray_dicom(data: bytes, max_pixels: int, voi: int = 0) -> DicomRadiograph:
    """The radiograph, by the rules above, and the patient's age from its header; `voi`: which of the file's VOI
    windows or LUTs to apply (the first unless a reader picks another: `voi_presets`)."""
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
    _check_jpeg_baseline(ds)
    stored = fast_pixels(ds)
    if stored is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # decoders warn on stderr; the outcome below is what we record
                stored = ds.pixel_array
        except Exception as error:
            syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
            raise Unreadable(
                f"pixel data could not be decoded ({getattr(syntax, 'name', syntax)}: {type(error).__name__})"
            ) from None
    if stored.ndim != 2:
        raise NotScreenable(f"not a single grayscale frame (pixel array of {stored.ndim} dimensions)")
    try:
        pixels, note = display(ds, stored, voi)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise Unreadable(f"its LUT or window attributes are invalid ({type(error).__name__})") from None
    return DicomRadiograph(pixels, note, patient_age_years(ds))


AGE_STRING = re.compile(r"^(\d{3})([DWMY])$")  # VR AS: 045Y, 018M, 003W, 010D
DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
OLDEST = 130  # years: an age beyond it is a wrong date, not a patient


def patient_age_years(ds: pydicom.Dataset) -> float | None:
    """The patient's age at the study: PatientAge when it is a valid age string, else PatientBirthDate with the
    study's (or series', acquisition's, content's) date when both are valid dates in order; None otherwise (an
    anonymiser's hashed birth date, `62` for an AS, a study date before the birth). pydicom's warnings about such
    values quote them (a birth date is patient data): they are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _age_years(ds)


def _age_years(ds: pydicom.Dataset) -> float | None:
    age = AGE_STRING.match(str(ds.get("PatientAge", "") or "").strip())
    if age:
        years = int(age.group(1)) * DAYS_PER_UNIT[age.group(2)] / 365.25
        return years if years <= OLDEST else None
    birth = _date(ds.get("PatientBirthDate"))
    taken = next(
        (day for key in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate") if (day := _date(ds.get(key)))),
        None,
    )
    if birth is None or taken is None or taken < birth:
        return None
    years = (taken - birth).days / 365.25
    return years if years <= OLDEST else None


def study_date(ds: pydicom.Dataset) -> date | None:
    """The study's date where the header gives a valid one (warnings quoting an invalid value silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _date(ds.get("StudyDate"))


def _date(value: Any) -> date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _check_jpeg_baseline(ds: pydicom.Dataset) -> None:
    """pydicom's JPEG baseline decoders turn corrupt entropy-coded data into a changed picture without a word;
    libjpeg-turbo in strict mode says so. Its pixels differ from theirs by at most one grey level, so it only
    checks: the pixels stay those of pydicom's decoder, as the released model was measured with."""
    if ds.file_meta.TransferSyntaxUID != pydicom.uid.JPEGBaseline8Bit:
        return
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as error:  # pydicom raises several types for broken encapsulation
        raise Unreadable(f"pixel data could not be decoded (JPEG Baseline: {type(error).__name__})") from None
    decode_jpeg_strict(frame)


def _dicom_rle(frame: bytes, ds: pydicom.Dataset) -> np.ndarray:
    dtype = np.dtype(f"<u{int(ds.BitsAllocated) // 8}")
    return np.frombuffer(imagecodecs.dicomrle_decode(frame, dtype), dtype).reshape(int(ds.Rows), int(ds.Columns))


# The syntaxes of CR/DX archives that imagecodecs decodes to the same pixels as pydicom's plugins
# (tests/test_imaging_dicom.py compares them): the lossless ones and JPEG-LS near-lossless, whose standards leave the
# decoder no choice, at two to four times their speed (libjpeg-turbo 3, CharLS, its RLE); and JPEG 2000, lossy too,
# with the same OpenJPEG, which pydicom's plugin runs holding the GIL (two decode threads took turns; here they share
# the cores). Anything else goes through pydicom.
FAST_DECODERS: dict[str, Callable[[bytes, pydicom.Dataset], np.ndarray]] = {
    pydicom.uid.JPEGLosslessSV1: lambda frame, _: imagecodecs.jpeg8_decode(frame),
    pydicom.uid.JPEGLossless: lambda frame, _: imagecodecs.jpeg8_decode(frame),
    pydicom.uid.JPEGLSLossless: lambda frame, _: imagecodecs.jpegls_decode(frame),
    pydicom.uid.JPEGLSNearLossless: lambda frame, _: imagecodecs.jpegls_decode(frame),
    pydicom.uid.JPEG2000Lossless: lambda frame, _: imagecodecs.jpeg2k_decode(frame),
    pydicom.uid.JPEG2000: lambda frame, _: imagecodecs.jpeg2k_decode(frame),
    pydicom.uid.RLELossless: _dicom_rle,
}


def fast_pixels(ds: pydicom.Dataset) -> np.ndarray | None:
    """The stored pixels of an unsigned single-frame film in one of FAST_DECODERS, as pydicom would give them; None
    where pydicom must decode (another syntax, signed pixels, or a stream these decoders refuse: pydicom's own
    decoder then says why)."""
    decode = FAST_DECODERS.get(ds.file_meta.TransferSyntaxUID)
    if decode is None or int(ds.get("PixelRepresentation", 0)) != 0 or int(ds.get("BitsAllocated", 0)) not in (8, 16):
        return None
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        pixels = decode(frame, ds)
    except Exception:  # broken encapsulation or stream: pydicom's decoder gives the reason
        return None
    if pixels.shape != (int(ds.Rows), int(ds.Columns)) or pixels.dtype.kind != "u":  # a signed stream: pydicom's
        return None
    return pixels.astype(f"uint{int(ds.BitsAllocated)}", copy=False)


def display(ds: pydicom.Dataset, stored: np.ndarray, voi: int = 0) -> tuple[np.ndarray, str | None]:
    """The film's grey levels: the rules below worked out once per stored value up to its brightest pixel (from its
    darkest where it has negative ones), then looked up per pixel (the same pixels as working them out per pixel, at
    a fraction of the time for a 2,000-px film)."""
    if not np.issubdtype(stored.dtype, np.integer):
        return display_values(ds, stored, voi)
    darkest, brightest = int(stored.min()), int(stored.max())
    offset = min(darkest, 0)  # an unsigned film indexes the table with its own values, unconverted
    values = np.arange(offset, brightest + 1).astype(stored.dtype)
    index = stored if offset == 0 else stored.astype(np.int32) - offset

    def constant_on_the_film(table: np.ndarray) -> bool:
        first = table[darkest - offset]
        if table[brightest - offset] != first:  # the usual answer, without a pass over the pixels
            return False
        return not np.any((table != first)[index])

    table, note = display_values(ds, values, voi, constant_on_the_film)
    return table[index], note


def display_values(
    ds: pydicom.Dataset,
    values: np.ndarray,
    voi: int = 0,
    constant_on_the_film: Callable[[np.ndarray], bool] = lambda grey: bool(np.ptp(grey) == 0),
) -> tuple[np.ndarray, str | None]:
    """Modality LUT, then the VOI window unless it is unusable: one of width 0, or one that puts every pixel at
    the same grey although the stored values differ, is ignored (and said so); only a constant image is blank.
    `values`: the stored values to work out (the film's pixels, or a table of them with `constant_on_the_film`
    saying whether a rendering of the table puts every pixel of the film at one grey)."""
    modality = apply_modality_lut(values, ds)
    modality_range = apply_modality_lut(_stored_range(ds), ds)
    pixels, (low, high), note = modality.astype(np.float32), np.sort(modality_range.astype(np.float32)), None
    if _has_voi(ds):
        if not _valid_window(ds):
            note = "its VOI window is invalid (width 0 or missing); shown over the stored range instead"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                windowed = apply_voi_lut(modality, ds, voi).astype(np.float32)
                window_range = apply_voi_lut(modality_range, ds, voi).astype(np.float32)
            if not constant_on_the_film(windowed) or constant_on_the_film(values):
                pixels, (low, high) = windowed, np.sort(window_range)
            else:
                note = "its VOI window excludes every stored pixel value; shown over the stored range instead"
    if ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
        pixels = low + high - pixels
    pixels = np.clip((pixels - low) / max(high - low, 1e-6), 0.0, 1.0)
    return pixels.astype(np.float32), note


def voi_presets(data: bytes) -> list[str]:
    """The VOI windows or LUTs a DICOM file offers (what `read_xray_dicom`'s `voi` picks among), named by their
    explanations where the file gives them; none for a file with none, or that is not DICOM."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            if "VOILUTSequence" in ds:  # what pydicom applies first, as the screening did
                items = ds.VOILUTSequence
                return [str(item.get("LUTExplanation", "") or f"VOI LUT {n}") for n, item in enumerate(items, 1)]
            if not _valid_window(ds):
                return []
            centers, widths = _each(ds.WindowCenter), _each(ds.WindowWidth)
            explanations = _each(ds.get("WindowCenterWidthExplanation"))
    except Exception:  # not DICOM, or a header pydicom cannot read: the film is shown as screened
        return []
    names = []
    for n, (center, width) in enumerate(zip(centers, widths, strict=False)):
        explained = str(explanations[n]).strip() if n < len(explanations) and explanations[n] else ""
        names.append(
            f"{explained} (window {float(center):g}/{float(width):g})"
            if explained
            else f"window {float(center):g}/{float(width):g}"
        )
    return names


def _has_voi(ds: pydicom.Dataset) -> bool:
    return "VOILUTSequence" in ds or "WindowCenter" in ds or "WindowWidth" in ds


def _each(value: Any) -> list[Any]:
    """The values of an element that may hold one or several (a MultiValue); none for an absent one."""
    if value is None:
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]


def _valid_window(ds: pydicom.Dataset) -> bool:
    if "VOILUTSequence" in ds:
        return True
    try:
        first = float(_each(ds.WindowWidth)[0])
        _ = ds.WindowCenter
    except (AttributeError, TypeError, ValueError, IndexError):
        return False
    return first > 0
