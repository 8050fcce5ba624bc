"""The outbox: one current report per study, and objects that cannot be made made again later.

`usecases/outbox.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import io
import os
import shutil
from dataclasses import replace
from datetime import timedelta

import highdicom as hd
import pydicom
import sqlalchemy as sa
from helpers import DICOM

from screening.db.outbox import Retries, record_remade
from screening.db.schema import OutboxObject, utcnow
from screening.dicomnet.spool import Spool
from screening.usecases.enqueue import enqueue_folders
from screening.usecases.listen import process_spool, store_instance
from screening.usecases.outbox import list_outbox, make_batch_results, send_due
from screening.usecases.results import batch_results


def dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_study_keeps_one_current_report_through_re_sends_and_late_instances(services):
    """An identical re-send makes nothing new; a late instance makes one report of the whole study naming the one
    it replaces, and the study's verdict there agrees with `screen results --studies`."""
    spool = Spool(services.settings.dicom.spool_dir)
    device = services.settings.dicom.device_uid
    film = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    film.StudyInstanceUID = pydicom.uid.generate_uid()
    instances = []
    for _ in range(3):
        film.SOPInstanceUID = pydicom.uid.generate_uid()
        instances.append(dataset_bytes(film))

    def arrive(encoded: list[bytes]) -> list:
        for one in encoded:
            assert store_instance(spool, pydicom.dcmread(io.BytesIO(one)), one, device) == 0x0000
        for instance in spool.incoming.rglob("*.dcm"):
            os.utime(instance, (0, 0))  # arrived long ago: settled
        process_spool(services, spool)
        return [entry for entry in list_outbox(services) if entry.study_uid == film.StudyInstanceUID]

    first = arrive(instances[:2])
    assert sorted(entry.kind for entry in first) == ["sc", "sc", "sr"]
    assert arrive(instances[:2]) == first  # the same two again: no new report, no new capture
    after_late = arrive(instances[2:])
    new = [entry for entry in after_late if entry not in first]
    assert sorted(entry.kind for entry in new) == ["sc", "sr"]  # one report of the whole study, the new image's capture
    reports = [
        hd.sr.srread(path)
        for path in sorted((services.settings.data_dir / "outbox").rglob("*.dcm"))
        if pydicom.dcmread(path, stop_before_pixels=True).Modality == "SR"
    ]
    (old_report,) = [one for one in reports if "PredecessorDocumentsSequence" not in one]
    (report,) = [one for one in reports if "PredecessorDocumentsSequence" in one]
    (predecessor,) = report.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert predecessor.ReferencedSOPInstanceUID == old_report.SOPInstanceUID
    groups = report.content.get_image_measurement_groups()
    assert len(groups) == 3  # every instance of the study, whichever batch it came in
    (study,) = [row for row in batch_results(services, None).studies if row.study_uid == film.StudyInstanceUID]
    present = [group.get_qualitative_evaluations()[0].value.meaning == "Present" for group in groups]
    assert study.flagged == any(present)


def test_a_study_whose_results_cannot_be_made_fails_alone_and_is_made_again_after_a_back_off(services, tmp_path):
    folder, studies = tmp_path / "night", {}
    for name in ("kept", "moved", "replaced"):
        study = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
        study.StudyInstanceUID, study.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        (folder / name).mkdir(parents=True)
        study.save_as(folder / name / "film.dcm", enforce_file_format=True)
        studies[study.StudyInstanceUID] = name
    batch_id = enqueue_folders(services, [folder]).progress.batch_id
    shutil.move(folder / "moved" / "film.dcm", tmp_path / "away.dcm")  # moved away after screening, for a while
    shutil.copy(folder / "kept" / "film.dcm", folder / "replaced" / "film.dcm")  # another patient's film there now
    made = {(studies[entry.study_uid], entry.kind): entry for entry in make_batch_results(services, batch_id)}
    assert {key: (entry.status, entry.made, entry.attempts) for key, entry in made.items()} == {
        ("kept", "sr"): ("pending", True, 0),
        ("kept", "sc"): ("pending", True, 0),
        ("moved", "sr"): ("pending", False, 1),
        ("replaced", "sr"): ("pending", False, 1),
    }
    reason = made["moved", "sr"].last_error
    assert reason == "could not be made from its images: cannot read file: No such file or directory"
    assert made["replaced", "sr"].last_error == (
        "could not be made from its images: file changed since it was enqueued (SHA-256 differs); enqueue it again"
    )
    assert made["moved", "sr"].retry_in_s > 0 and send_due(services) == []  # not before its back-off
    sent = {studies[study.study_uid]: study.sent for study in batch_results(services, batch_id).studies}
    assert sent["kept"] == (
        "report in the outbox (no SCREEN_RESULTS_DESTINATION); heatmap in the outbox (no SCREEN_RESULTS_DESTINATION)"
    )
    assert sent["moved"] == f"report {reason} (1 attempt, tried again later)"

    shutil.move(tmp_path / "away.dcm", folder / "moved" / "film.dcm")  # back where it was
    with services.sessions.begin() as session:  # the back-off has passed
        session.execute(sa.update(OutboxObject).values(next_attempt_at=utcnow()))
    no_wait = replace(
        services, settings=replace(services.settings, dicom=replace(services.settings.dicom, send_backoff_s=0))
    )
    tried = {(studies[entry.study_uid], entry.kind): entry for entry in send_due(no_wait)}
    assert tried.keys() == {("moved", "sr"), ("replaced", "sr")}
    assert tried["moved", "sr"].made and tried["moved", "sr"].status == "pending"  # made: kept in the outbox
    while send_due(no_wait):  # the replaced film's report, until its attempts are spent
        pass
    after = {(studies[entry.study_uid], entry.kind): entry for entry in list_outbox(services)}
    assert {key: (entry.status, entry.made) for key, entry in after.items()} == {
        ("kept", "sr"): ("pending", True),
        ("kept", "sc"): ("pending", True),
        ("moved", "sr"): ("pending", True),
        ("moved", "sc"): ("pending", True),  # its capture, which the header's failure had kept from being tried
        ("replaced", "sr"): ("failed", False),
    }
    assert after["replaced", "sr"].attempts == services.settings.dicom.send_max_attempts
    sent = {studies[study.study_uid]: study.sent for study in batch_results(services, batch_id).studies}
    assert sent["moved"] == sent["kept"]
    assert sent["replaced"] == (
        "report could not be made from its images: file changed since it was enqueued (SHA-256 differs); "
        "enqueue it again (5 attempts, given up)"
    )
    with services.sessions() as session:
        remade = session.get_one(OutboxObject, after["moved", "sr"].id)
        assert hd.sr.srread(remade.path).SOPInstanceUID == remade.sop_uid
    (replaced_uid,) = [uid for uid, name in studies.items() if name == "replaced"]
    with services.sessions.begin() as session:  # as when a later batch's report of the study covers its images
        (superseded,) = record_remade(session, batch_id, replaced_uid, [], Retries(5, timedelta(0)))
        assert superseded.status == "superseded"
    sent = {studies[study.study_uid]: study.sent for study in batch_results(services, batch_id).studies}
    assert sent["replaced"] == "report superseded by a later one" and send_due(no_wait) == []
