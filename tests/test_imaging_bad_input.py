"""Bad input gets a clear reason and a status, never an unhandled exception."""

import io

import cv2
import numpy as np
import pydicom
import pytest
from helpers import DICOM, FULLRES, dicom_without_pixels, png_header_only, scrambled_jpeg

from screening.imaging.errors import ImageRejected
from screening.imaging.read import decode_radiograph
from screening.imaging.sniff import sniff_kind

MAX_PIXELS = 60_000_000
CHEST_DICOM = DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
A_JPEG = sorted((FULLRES / "train" / "NORMAL").iterdir())[0]


def rejection(data: bytes) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        decode_radiograph(data, MAX_PIXELS)
    return caught.value


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (lambda: b"", "failed", "empty file"),
        (lambda: np.random.default_rng(0).bytes(5000), "skipped", "not a JPEG, PNG or DICOM"),
        (lambda: A_JPEG.read_bytes()[: len(A_JPEG.read_bytes()) // 2], "failed", "truncated JPEG"),
        (lambda: A_JPEG.read_bytes()[:600], "failed", "truncated image header"),
        (lambda: b"\xff\xd8\xff" + b"\x00" * 500, "failed", "corrupt or truncated image header"),
        (lambda: png_header_only(30_000, 30_000), "skipped", "too large"),
        (lambda: png_header_only(9_000, 9_000), "skipped", "exceeds the limit of 60000000"),
        (lambda: CHEST_DICOM.read_bytes()[: CHEST_DICOM.stat().st_size // 2], "failed", "truncated DICOM"),
        (dicom_without_pixels, "skipped", "no pixel data"),
        (lambda: b"\x00" * 128 + b"DICM" + b"\x00" * 64, "failed", "not a readable DICOM file"),
    ],
    ids=[
        "empty",
        "random-bytes",
        "truncated-half",
        "truncated-header",
        "corrupt-header",
        "bomb-30000",
        "over-limit",
        "truncated-dicom",
        "dicom-no-pixels",
        "dicom-garbage",
    ],
)
def test_bad_input_is_rejected_with_a_reason(make, status, reason):
    problem = rejection(make())
    assert problem.status == status
    assert reason in problem.reason


def test_sniffing_is_by_content_not_extension():
    assert sniff_kind(A_JPEG.read_bytes()[:132]) == "jpeg"
    assert sniff_kind(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()[:132]) == "png"
    assert sniff_kind((DICOM / "ct_small_not_xray.dcm").read_bytes()[:132]) == "dicom"
    assert sniff_kind(b"%PDF-1.4" + b"\x00" * 200) is None


def test_sixteen_bit_png_keeps_its_depth():
    ramp = np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (64, 1))
    radiograph = decode_radiograph(cv2.imencode(".png", ramp)[1].tobytes(), MAX_PIXELS)
    assert radiograph.kind == "png" and radiograph.pixels.max() == 65280


def test_a_dicom_whose_jpeg_baseline_data_is_scrambled_fails_with_the_decoders_reason():
    from pydicom.encaps import encapsulate, generate_frames

    dataset = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([scrambled_jpeg(frame)])
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    problem = rejection(buffer.getvalue())
    assert problem.status == "failed" and problem.reason.startswith("corrupt JPEG data: ")
