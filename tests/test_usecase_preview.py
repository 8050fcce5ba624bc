"""The model's view of a file: the one path from a file to a probability, as preview, worker and evaluation take it.

`usecases/preview.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import shutil

import numpy as np
import pytest
from helpers import DICOM, FULLRES

from screening.imaging.errors import NotScreenable
from screening.training.evaluate import score_labelled_folder
from screening.usecases.context import active_model
from screening.usecases.enqueue import enqueue_folders
from screening.usecases.evaluate import evaluate_version
from screening.usecases.preview import PictureError, model_view, write_preview
from screening.usecases.results import batch_results
from screening.usecases.screen_chunk import process_runtime


def test_preview_worker_and_evaluation_give_one_probability_per_file(services, tmp_path):
    """The one path from a file to a probability: the same number wherever the file is scored."""
    files = {
        "NORMAL": sorted((FULLRES / "val").glob("NORMAL*"))[0],
        "PNEUMONIA": sorted((FULLRES / "val").glob("p*"))[0],
    }
    labelled = tmp_path / "labelled"
    for label, path in files.items():
        (labelled / label).mkdir(parents=True)
        shutil.copy(path, labelled / label / path.name)
    enqueue_folders(services, [labelled])
    worker = {row.path.rsplit("/", 1)[1]: row.probability for row in batch_results(services, None).images}

    version = active_model(services)
    classifier = process_runtime(services).classifier_for(version)
    evaluated = score_labelled_folder(classifier, version.preprocessing, labelled)
    preview = [classifier.assess(model_view(services, path)[0].image[None]).probabilities[0] for path in files.values()]

    expected = [worker[path.name] for path in files.values()]
    assert list(evaluated.labels) == [0, 1] and not evaluated.excluded
    np.testing.assert_allclose(evaluated.probabilities, expected, rtol=1e-5)
    np.testing.assert_allclose(preview, expected, rtol=1e-5)
    evaluation = evaluate_version(services, version.id, labelled, rounds=20)
    assert evaluation.model_version == version.id and evaluation.figures.images == 2


def test_preview_writes_the_model_input_and_refuses_what_it_would_not_score(services, tmp_path):
    spec, size = write_preview(services, DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm", tmp_path / "v.png")
    assert size == (224, 224) and spec.name == "plain-v1" and (tmp_path / "v.png").stat().st_size > 0
    with pytest.raises(PictureError, match="skipped: modality CT"):
        write_preview(services, DICOM / "ct_small_not_xray.dcm", tmp_path / "ct.png")
    with pytest.raises(PictureError, match="must end in"):
        write_preview(services, DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm", tmp_path / "v.gif")
    with pytest.raises(NotScreenable):
        model_view(services, DICOM / "multiframe_2frame.dcm")
