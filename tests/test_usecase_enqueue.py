"""Enqueueing a night's folders in this process, and what the results say of each file.

`usecases/enqueue.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

from helpers import EXPECTED_DICOM_STATUS

from screening.usecases.enqueue import Requeued, enqueue_folders, requeue
from screening.usecases.results import batch_results, batch_status


def test_enqueue_screens_every_file_and_results_say_what_became_of_each(services, screened, sample_folder):
    assert screened.progress.finished and screened.progress.total == 11 and screened.failed == 0
    found = batch_results(services, None)
    statuses = {row.path.rsplit("/", 1)[1]: row.status for row in found.images}
    assert {name: statuses[name] for name in EXPECTED_DICOM_STATUS} == EXPECTED_DICOM_STATUS
    assert statuses["notes.txt"] == "skipped"
    assert len([study for study in found.studies if study.probability is not None]) == 2
    assert batch_status(services, found.batch_id).finished
    overlapping = [sample_folder, sample_folder / "jpeg", sample_folder / "jpeg" / "..", sample_folder / "dicom"]
    rerun = enqueue_folders(services, overlapping)
    assert rerun.progress.total == rerun.progress.reused == 11  # each file once, and none screened twice
    assert requeue(services, None) == Requeued(rerun.progress.batch_id, 0, 0)
