"""Patient-wise split on the real training folder, and the threshold rule."""

import numpy as np
import pytest
from helpers import CXR224

from screening.training.metrics import binary_metrics, threshold_for_sensitivity
from screening.training.split import list_examples, patient_of, patient_split


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1_virus_6.jpeg", "person1"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0115-0001-0002.jpeg", "IM-0115"),
    ],
)
def test_patient_from_file_name(name, patient):
    assert patient_of(name) == patient


@pytest.fixture(scope="module")
def split():
    examples = list_examples(CXR224)
    split = patient_split(examples, 0.2, seed=42)
    return examples, split.train, split.validation


def test_split_keeps_every_patient_and_every_identical_image_on_one_side(split):
    examples, train, validation = split
    assert len(train) + len(validation) == len(examples) == 5216
    assert not {e.patient for e in train} & {e.patient for e in validation}
    assert not {e.sha256 for e in train} & {e.sha256 for e in validation}


def test_split_is_stratified_and_reproducible(split):
    examples, train, validation = split
    share = lambda subset: np.mean([e.label for e in subset])  # noqa: E731
    assert abs(share(train) - share(validation)) < 0.05
    assert 0.15 < len(validation) / len(examples) < 0.25
    again = patient_split(examples, 0.2, seed=42).validation
    assert [e.path for e in again] == [e.path for e in validation]


def test_manifest_lists_every_file_by_hash(split):
    manifest = patient_split(split[0], 0.2, seed=42).manifest()
    assert len(manifest.files) == 5216
    assert {row.split for row in manifest.files} == {"train", "validation"}


def test_threshold_is_the_highest_that_keeps_the_target_sensitivity():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300, int), np.ones(700, int)]
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    threshold = threshold_for_sensitivity(labels, scores, 0.95)
    assert binary_metrics(labels, scores, threshold).sensitivity >= 0.95
    assert binary_metrics(labels, scores, np.nextafter(threshold, 1)).sensitivity < 0.95
