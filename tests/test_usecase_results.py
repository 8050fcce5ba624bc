"""What a batch became: its progress, every file and study, the flagged ones, and how a batch is named.

`usecases/results.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import pytest

from screening.usecases.enqueue import enqueue_folders
from screening.usecases.results import NoSuchBatch, batch_results, batch_status, operating_point, recent_batches


def test_flagged_only_is_what_the_rows_flag_and_studies_say_why_they_have_no_score(services, screened):
    every = batch_results(services, None)
    flagged = batch_results(services, None, flagged_only=True)
    expected = [row.path for row in every.images if row.probability is not None and row.probability >= row.threshold]
    assert expected and [row.path for row in flagged.images] == expected  # derived from the rows, not remembered
    assert all(row.flagged for row in flagged.images) and all(study.flagged for study in flagged.studies)
    for study in every.studies:
        assert (study.note is None) == (study.images_screened > 0), study
        if study.note:
            assert study.note.startswith("no image could be screened: ")
    scored = next(row for row in every.images if row.probability is not None)
    assert f"{scored.threshold:.3f}" in operating_point(scored)


def test_a_batch_is_named_by_its_id_a_prefix_of_it_or_as_the_latest(services, screened, sample_folder):
    first = screened.progress.batch_id
    assert batch_status(services, None).batch_id == first and batch_status(services, first).finished
    assert batch_status(services, first[:8]).batch_id == first  # the eight characters `screen batches` shows
    with pytest.raises(NoSuchBatch, match="no such batch"):
        batch_status(services, first[:4])  # too short to name one
    with pytest.raises(NoSuchBatch):
        batch_status(services, "no-such-batch")
    rerun = enqueue_folders(services, [sample_folder])
    listed = recent_batches(services)
    assert [line.progress.batch_id for line in listed] == [rerun.progress.batch_id, first]  # newest first
    assert listed[1].progress.total == 11 and listed[1].roots == [str(sample_folder.resolve())]
    assert batch_results(services, None).batch_id == rerun.progress.batch_id
