"""`screen evaluate`: a registered version on a labelled folder, every image judged as the worker judges it.

`usecases/evaluate.py` called as the edges call it: without click, on SQLite, in this process."""

import shutil

import pytest
from helpers import DICOM, FULLRES

from screening.training.labelled import LabelledDataError
from screening.usecases.context import active_model
from screening.usecases.enqueue import enqueue_folders
from screening.usecases.evaluate import evaluate_version
from screening.usecases.results import batch_results


def test_the_confusion_is_the_workers_flags_and_what_it_would_not_score_is_left_out(services, tmp_path):
    labelled = tmp_path / "labelled"
    for label, pattern in (("NORMAL", "NORMAL*"), ("PNEUMONIA", "p*")):
        (labelled / label).mkdir(parents=True)
        for path in sorted((FULLRES / "val").glob(pattern))[:3]:
            shutil.copy(path, labelled / label / path.name)
    shutil.copy(DICOM / "ct_small_not_xray.dcm", labelled / "NORMAL" / "ct.dcm")  # the worker skips a CT
    version = active_model(services)
    evaluation = evaluate_version(services, version.id, labelled, rounds=20)

    enqueue_folders(services, [labelled])
    flags = {row.path.rsplit("/", 1)[1]: row.flagged for row in batch_results(services, None).images}
    pneumonia = {path.name for path in (labelled / "PNEUMONIA").iterdir()}
    scored = {name: flag for name, flag in flags.items() if flag is not None}
    confusion = evaluation.figures.confusion
    assert confusion is not None and evaluation.model_version == version.id
    assert confusion.tp == sum(flag for name, flag in scored.items() if name in pneumonia)
    assert confusion.fp == sum(flag for name, flag in scored.items() if name not in pneumonia)
    assert evaluation.figures.images == len(scored) == 6 and confusion.tp + confusion.fn == 3
    assert [(one.file, one.status) for one in evaluation.figures.excluded] == [("ct.dcm", "skipped")]


def test_a_folder_of_one_class_is_refused_with_what_it_lacks(services, tmp_path):
    (tmp_path / "one-class" / "NORMAL").mkdir(parents=True)
    shutil.copy(sorted((FULLRES / "val").glob("NORMAL*"))[0], tmp_path / "one-class" / "NORMAL" / "n.jpeg")
    with pytest.raises(LabelledDataError, match=r"\(missing: PNEUMONIA\)"):
        evaluate_version(services, active_model(services).id, tmp_path / "one-class", rounds=20)
