"""The DICOM listener's pass over its spool: settled studies become batches and reports.

`usecases/listen.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import io
import os

import pydicom
from helpers import DICOM

from screening.dicomnet.objects import our_uid
from screening.dicomnet.spool import Spool
from screening.usecases.listen import process_spool, store_instance
from screening.usecases.outbox import list_outbox, make_batch_results
from screening.usecases.results import batch_results


def dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_listener_pass_turns_a_settled_study_into_a_batch_and_a_report(services, tmp_path):
    """The listener's loop without its network side: spool -> batch -> report in the outbox (no destination)."""
    spool = Spool(services.settings.dicom.spool_dir)
    chest = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    encoded = (DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm").read_bytes()
    device = services.settings.dicom.device_uid
    assert store_instance(spool, chest, encoded, device) == 0x0000
    ours = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    ours.SOPInstanceUID, ours.StudyInstanceUID = our_uid(device), "9.9.9"
    assert store_instance(spool, ours, encoded, device) == 0x0000 and not (spool.incoming / "9.9.9").exists()
    ours.SOPInstanceUID, ours.StudyInstanceUID = "1.2.3", "../../etc"
    assert store_instance(spool, ours, encoded, device) == 0xC000

    poisoned = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    poisoned.StudyInstanceUID, poisoned.SOPInstanceUID = "1.2.826.0.1.3680043.99.1", "1.2.826.0.1.3680043.99.1.1"
    poisoned.PatientBirthDate, poisoned.StudyDate, poisoned.StudyTime, poisoned.PatientSex = (
        "a1b2c3d4",  # an anonymiser's hash
        "2026-12-01",
        "10:15:00",
        "W",
    )
    assert store_instance(spool, poisoned, dataset_bytes(poisoned), device) == 0x0000

    for instance in spool.incoming.rglob("*.dcm"):
        os.utime(instance, (0, 0))  # arrived long ago: settled
    process_spool(services, spool)
    batches = {(folder / ".batch").read_text(): folder for folder in spool.studies.iterdir()}
    assert len(batches) == 2 and all((folder / ".exported").exists() for folder in batches.values())
    entries = list_outbox(services)
    screened = [row for batch in batches for row in batch_results(services, batch).images]
    expected = [kind for row in screened for kind in (["sr", "sc"] if row.flagged else ["sr"])]  # a capture if flagged
    assert len(screened) == 2 and sorted(entry.kind for entry in entries) == sorted(expected)
    assert all(entry.status == "pending" and entry.destination is None for entry in entries)
    (poisoned_report,) = [e for e in entries if e.study_uid == poisoned.StudyInstanceUID and e.kind == "sr"]
    assert poisoned_report.notes == (
        "PatientAge left empty: not a valid AS; PatientBirthDate left empty: not a valid DA; "
        "PatientSex left empty: not a valid CS; StudyDate left empty: not a valid DA; "
        "StudyTime left empty: not a valid TM"
    )
    assert all(make_batch_results(services, batch_id) == [] for batch_id in batches)  # exported once
    process_spool(services, spool)  # nothing left to do
    assert len(list_outbox(services)) == 4
