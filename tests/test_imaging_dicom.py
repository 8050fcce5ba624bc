"""DICOM rules on the real files of ../shared/data/dicom and pydicom-data's Philips chest."""

import numpy as np
import pydicom
import pytest
from helpers import DICOM, EXPECTED_DICOM_STATUS
from pydicom.data import get_testdata_file

from screening.imaging.dicom import display, display_values, fast_pixels
from screening.imaging.errors import ImageRejected
from screening.imaging.preprocess import preprocess
from screening.imaging.read import decode_radiograph
from screening.model.preprocessing import PreprocessSpec

MAX_PIXELS = 60_000_000


def model_view(data: bytes) -> np.ndarray:
    return preprocess(decode_radiograph(data, MAX_PIXELS).pixels, PreprocessSpec())


@pytest.mark.parametrize("name", sorted(EXPECTED_DICOM_STATUS))
def test_each_shared_dicom_is_screened_or_skipped_as_documented(name):
    data = (DICOM / name).read_bytes()
    try:
        radiograph = decode_radiograph(data, MAX_PIXELS)
        status = "done"
        assert radiograph.pixels.ndim == 2 and radiograph.kind == "dicom"
    except ImageRejected as problem:
        status = problem.status
    assert status == EXPECTED_DICOM_STATUS[name]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("cr_hip_jpegls_lossless.dcm", "body part HIP is not a chest"),
        ("ct_small_not_xray.dcm", "modality CT is not a radiograph"),
        ("multiframe_2frame.dcm", "modality US is not a radiograph"),
    ],
)
def test_skip_reasons_say_why(name, reason):
    with pytest.raises(ImageRejected, match=reason) as caught:
        decode_radiograph((DICOM / name).read_bytes(), MAX_PIXELS)
    assert caught.value.status == "skipped"


def _upright(image: np.ndarray) -> bool:
    """Chest PA in the model's view: the mediastinum and spine (centre) brighter than the lung fields."""
    gray = image[:, :, 0].astype(float)
    height, width = gray.shape
    rows = slice(int(0.3 * height), int(0.6 * height))
    centre = gray[rows, int(0.46 * width) : int(0.54 * width)].mean()
    lungs = np.concatenate(
        [gray[rows, int(0.2 * width) : int(0.35 * width)], gray[rows, int(0.65 * width) : int(0.8 * width)]]
    ).mean()
    return centre > lungs + 20


@pytest.mark.parametrize(
    "name",
    [
        "cr_chest_pa_monochrome1_jpegls.dcm",
        "cr_chest_pa_monochrome1_jpeg_lossless.dcm",
        "cr_chest_pa_monochrome2_jpeg_baseline.dcm",
    ],
)
def test_chest_dicoms_come_out_upright(name):
    assert _upright(model_view((DICOM / name).read_bytes()))


def test_monochrome1_would_be_upside_down_without_inversion():
    image = model_view((DICOM / "cr_chest_pa_monochrome1_jpegls.dcm").read_bytes())
    assert not _upright(255 - image)


def test_jpeg_ls_and_jpeg_lossless_encodings_give_the_same_image():
    near_lossless = model_view((DICOM / "cr_chest_pa_monochrome1_jpegls.dcm").read_bytes()).astype(int)
    lossless = model_view((DICOM / "cr_chest_pa_monochrome1_jpeg_lossless.dcm").read_bytes()).astype(int)
    assert np.abs(near_lossless - lossless).mean() < 1.0


def test_jpeg_2000_decodes_to_the_uncompressed_pixels():
    uncompressed = decode_radiograph(open(get_testdata_file("RG1_UNCR.dcm", download=False), "rb").read(), MAX_PIXELS)
    jpeg2000 = decode_radiograph(open(get_testdata_file("RG1_J2KR.dcm", download=False), "rb").read(), MAX_PIXELS)
    np.testing.assert_array_equal(uncompressed.pixels, jpeg2000.pixels)


def test_dicom_pixels_scale_to_unit_range_from_the_stored_bit_depth():
    pixels = decode_radiograph((DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm").read_bytes(), MAX_PIXELS).pixels
    assert pixels.dtype == np.float32 and 0.0 <= pixels.min() and pixels.max() <= 1.0


@pytest.mark.parametrize(
    ("name", "fast"),
    [
        ("cr_chest_pa_monochrome1_jpeg_lossless.dcm", True),
        ("cr_chest_pa_monochrome1_jpegls.dcm", True),  # near-lossless
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", True),
        ("bad_sequence.dcm", True),  # 12 bits stored in 16
        ("JPEGLSNearLossless_08.dcm", True),
        ("JPEGLSNearLossless_16.dcm", True),
        ("RG1_J2KR.dcm", True),  # JPEG 2000 lossless, 15 bits, MONOCHROME1
        ("RG1_J2KI.dcm", True),  # JPEG 2000 lossy: the same OpenJPEG as pydicom's plugin
        ("RG3_J2KI.dcm", True),  # 10 bits
        ("MR2_J2KR.dcm", True),  # 12 bits
        ("J2K_pixelrep_mismatch.dcm", False),  # signed
        ("OBXXXX1A_rle.dcm", True),  # RLE, 8 bits
        ("MR_small_RLE.dcm", False),  # signed
        ("JPEG-LL.dcm", False),  # signed: pydicom decodes it
        ("MR_small_jpeg_ls_lossless.dcm", False),  # signed
        ("cr_chest_pa_monochrome2_jpeg_baseline.dcm", False),  # lossy: pydicom's decoder, as the model was measured
    ],
)
def test_the_fast_decoders_give_pydicoms_pixels_or_leave_the_film_to_it(name, fast):
    path = DICOM / name if (DICOM / name).exists() else get_testdata_file(name, download=False)
    dataset = pydicom.dcmread(path)
    pixels = fast_pixels(dataset)
    assert (pixels is not None) == fast
    if fast:
        reference = dataset.pixel_array  # pydicom's plugins: pylibjpeg's libjpeg and openjpeg
        assert pixels.dtype == reference.dtype
        np.testing.assert_array_equal(pixels, reference)


@pytest.mark.parametrize(
    "name",
    [
        "cr_chest_pa_monochrome1_jpeg_lossless.dcm",  # rescale, window, MONOCHROME1
        "cr_chest_pa_monochrome2_jpeg_baseline.dcm",
        "mlut_18.dcm",  # signed, modality LUT sequence
        "vlut_04.dcm",  # VOI LUT sequence
        "CT_small.dcm",  # signed, rescale, window
        "JPEG-LL.dcm",  # signed, 16 bits
    ],
)
def test_grey_levels_looked_up_per_stored_value_equal_those_worked_out_per_pixel(name):
    path = DICOM / name if (DICOM / name).exists() else get_testdata_file(name, download=False)
    dataset = pydicom.dcmread(path)
    stored = dataset.pixel_array
    looked_up, note = display(dataset, stored)
    per_pixel, per_pixel_note = display_values(dataset, stored)
    assert note == per_pixel_note
    np.testing.assert_array_equal(looked_up, per_pixel)


def test_a_voi_lut_that_puts_the_darkest_and_brightest_pixels_at_one_grey_is_kept_for_the_pixels_between():
    # A tent-shaped VOI LUT: stored 0 and 255 both become grey 0, the values between do not. The table path decides
    # from the film's pixels, as the per-pixel path does, not from its two extremes alone.
    dataset = pydicom.Dataset()
    dataset.PhotometricInterpretation, dataset.BitsStored, dataset.PixelRepresentation = "MONOCHROME2", 8, 0
    lut = pydicom.Dataset()
    lut.LUTDescriptor, lut.LUTData = [256, 0, 8], [min(value, 255 - value) for value in range(256)]
    dataset.VOILUTSequence = [lut]
    stored = np.array([[0, 255], [100, 30]], np.uint8)
    looked_up, note = display(dataset, stored)
    per_pixel, per_pixel_note = display_values(dataset, stored)
    assert note is None and per_pixel_note is None
    np.testing.assert_array_equal(looked_up, per_pixel)
    assert looked_up[0, 0] == looked_up[0, 1] < looked_up[1, 1]


def test_the_chest_film_in_rle_decodes_fast_to_the_stored_pixels():
    dataset = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome1_jpeg_lossless.dcm")
    stored = dataset.pixel_array
    dataset.compress(pydicom.uid.RLELossless, stored)  # 16 bits allocated: two byte segments to interleave
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(dataset_bytes(dataset)))
    pixels = fast_pixels(dataset)
    assert pixels is not None and pixels.dtype == stored.dtype
    np.testing.assert_array_equal(pixels, stored)
    np.testing.assert_array_equal(pixels, dataset.pixel_array)


def dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    written = pydicom.filebase.DicomBytesIO()
    dataset.save_as(written, enforce_file_format=True)
    return written.getvalue()
