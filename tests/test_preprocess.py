"""The seed preprocessing spec: geometry, determinism, thread safety, and serialisation."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import CXR224, FULLRES

from screening.imaging.errors import NotScreenable
from screening.imaging.preprocess import preprocess, to_8bit
from screening.imaging.read import decode_radiograph
from screening.model.preprocessing import PreprocessSpec

SPEC = PreprocessSpec()
FULL_SIZE = sorted((FULLRES / "train" / "PNEUMONIA").iterdir())[:12]


def pixels(path):
    return decode_radiograph(path.read_bytes(), 60_000_000).pixels


def test_output_is_224_square_three_identical_channels_uint8():
    image = preprocess(pixels(FULL_SIZE[0]), SPEC)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()


def test_full_size_images_are_stretched_not_cropped():
    """A wide image keeps both edges: its left and right halves map onto the halves of the output."""
    wide = np.zeros((500, 1500), np.float32)
    wide[:, :750] = 1.0
    image = preprocess(wide, SPEC)[:, :, 0].astype(int)
    assert image[:, :100].mean() > image[:, -100:].mean() + 100


def test_training_images_already_224_keep_their_size():
    source = pixels(sorted((CXR224 / "NORMAL").iterdir())[0])
    assert source.shape == (224, 224) and preprocess(source, SPEC).shape == (224, 224, 3)


def test_contrast_is_normalised_whatever_the_input_range():
    source = pixels(FULL_SIZE[1])
    np.testing.assert_array_equal(preprocess(source, SPEC), preprocess(source * 40.0 + 7.0, SPEC))


def test_blank_image_is_not_screenable():
    for blank in (np.full((300, 300), 17.0, np.float32), np.full((300, 300), 17, np.uint8)):
        with pytest.raises(NotScreenable, match="blank image"):
            preprocess(blank, SPEC)


def test_a_films_own_levels_are_scaled_by_table_to_the_same_grey_levels_as_by_arithmetic():
    """8- and 16-bit films go through a table worked out once per level: the same uint8 as the float arithmetic
    every film took before (so no score moves), on real JPEGs and on narrow and wide random ranges."""

    def by_arithmetic(film: np.ndarray) -> np.ndarray:
        low, high = float(film.min()), float(film.max())
        return ((film.astype(np.float32) - low) * (255.0 / (high - low))).astype(np.uint8)

    rng = np.random.default_rng(0)
    films = [decode_radiograph(path.read_bytes(), 60_000_000).pixels for path in FULL_SIZE[:4]]
    assert all(film.dtype == np.uint8 for film in films)  # a JPEG's own levels, not floats
    for dtype, top in ((np.uint8, 255), (np.uint16, 4095), (np.uint16, 65535)):
        for _ in range(10):
            low = int(rng.integers(0, top - 2))
            films.append(rng.integers(low, rng.integers(low + 2, top + 1), (97, 131)).astype(dtype))
    for film in films:
        np.testing.assert_array_equal(to_8bit(film), by_arithmetic(film))


def test_parallel_preprocessing_matches_sequential():
    """One CLAHE per thread: a shared instance corrupts results under a pool."""
    sources = [pixels(path) for path in FULL_SIZE]
    sequential = [preprocess(source, SPEC) for source in sources]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda s: preprocess(s, SPEC), sources))
            for a, b in zip(sequential, parallel, strict=True):
                np.testing.assert_array_equal(a, b)


def test_spec_round_trips_through_its_stored_form():
    stored = SPEC.to_dict()
    assert stored["name"] == "cxr-seed-v1" and PreprocessSpec.from_dict(stored) == SPEC
    different = PreprocessSpec.from_dict({**stored, "gamma": 1.0})
    assert not np.array_equal(preprocess(pixels(FULL_SIZE[2]), different), preprocess(pixels(FULL_SIZE[2]), SPEC))
