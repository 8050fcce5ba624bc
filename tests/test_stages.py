"""Each pipeline stage alone: declared inputs and outputs, and what it does with real files."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import DICOM, FULLRES, REPOSITORY

from screening.config import ImageLimits
from screening.hashing import sha256_hex
from screening.model.infer import Classifier
from screening.model.preprocessing import PreprocessSpec
from screening.model.released import RELEASED_ARTIFACT
from screening.worker.stages import ImageJob, Infer, Prepare, ReadFile, run_image_stages

JPEG = sorted((FULLRES / "train" / "PNEUMONIA").iterdir())[0]
STAGES = [ReadFile(ImageLimits()), Prepare(PreprocessSpec(), ImageLimits())]


def job_for(path: Path) -> ImageJob:
    return ImageJob(str(path), sha256_hex(path))


@pytest.mark.parametrize("stage", [ReadFile, Prepare, Infer])
def test_each_stage_declares_a_name_inputs_and_outputs(stage):
    assert stage.name and stage.inputs and stage.outputs
    assert set(stage.inputs) | set(stage.outputs) <= set(ImageJob.__dataclass_fields__)


def test_stages_fill_exactly_their_outputs():
    job = job_for(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    ReadFile(ImageLimits())(job)
    assert job.data is not None and job.image is None
    Prepare(PreprocessSpec(), ImageLimits())(job)
    assert job.kind == "dicom" and job.image.shape == (224, 224, 3) and job.data is None
    assert job.pixel_sha256 and {"decode", "preprocess"} <= set(job.timings_ms)


def test_a_file_changed_after_enqueue_is_not_screened_under_the_old_identity(tmp_path):
    copy = tmp_path / "x.jpeg"
    shutil.copy(JPEG, copy)
    job = job_for(copy)
    copy.write_bytes(copy.read_bytes() + b"\x00")
    run_image_stages(job, STAGES)
    assert (job.status, job.reason) == (
        "failed",
        "file changed since it was enqueued (SHA-256 differs); enqueue it again",
    )


def test_missing_and_oversized_files_are_recorded(tmp_path):
    gone = ImageJob(str(tmp_path / "gone.jpeg"), "0" * 64)
    run_image_stages(gone, STAGES)
    assert gone.status == "failed" and "No such file" in gone.reason
    big = run_image_stages(job_for(JPEG), [ReadFile(ImageLimits(max_file_bytes=1000))] + STAGES[1:])
    assert big.status == "skipped" and "file too large" in big.reason


def test_infer_scores_the_good_jobs_and_leaves_the_rejected_ones():
    classifier = Classifier.load(REPOSITORY / "models" / RELEASED_ARTIFACT, None)
    good = run_image_stages(job_for(JPEG), STAGES)
    bad = run_image_stages(job_for(DICOM / "ct_small_not_xray.dcm"), STAGES)
    Infer(classifier)([good, bad])
    assert good.status == "done" and good.scored is not None and 0.0 <= good.scored.probability <= 1.0
    threshold = classifier.policy.decide(good.known_population(), good.scored.adult_score).point.threshold
    assert good.scored.threshold == threshold and good.scored.flagged == (good.scored.probability >= threshold)
    assert good.timings_ms["infer"] > 0
    assert bad.status == "skipped" and bad.probability is None
    assert np.isfinite(good.timings_ms["preprocess"])
