"""Each use case called as the edges call it, without click or Celery: SQLite in a folder, in this process."""

import dataclasses
import io
import os
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from helpers import DICOM, EXPECTED_DICOM_STATUS, FULLRES, REPOSITORY, artifact_with

from screening.db.outbox import Retries, record_remade
from screening.db.schema import ResultObject, utcnow
from screening.dicomnet.objects import our_uid
from screening.dicomnet.spool import Spool
from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.imaging.errors import NotScreenable
from screening.model.infer import Classifier
from screening.model.released import RELEASED_ARTIFACT, RELEASES
from screening.training.evaluate import score_labelled_folder
from screening.usecases import review
from screening.usecases.context import active_model, bootstrap
from screening.usecases.enqueue import Requeued, enqueue_folders, requeue
from screening.usecases.evaluate import evaluate_version
from screening.usecases.explain import explain
from screening.usecases.label import LabelError, read_label_csv, record_labels
from screening.usecases.listen import process_spool, store_instance
from screening.usecases.models import list_models, promote_model, register_model, roll_back, show_model
from screening.usecases.outbox import list_outbox, make_batch_results, send_due
from screening.usecases.preview import PictureError, model_view, write_preview
from screening.usecases.results import NoSuchBatch, batch_results, batch_status, recent_batches
from screening.usecases.review import (
    FilmChanged,
    ImageStatus,
    StudyIdentifiers,
    Truth,
    WorklistFilter,
    WorklistView,
    evidence_png,
    film_png,
    heatmap_png,
    image_view,
    model_input_png,
    record_verdict,
    worklist,
)
from screening.web.routes.worklist import worklist_filter

RELEASED = REPOSITORY / "models" / RELEASED_ARTIFACT


@pytest.fixture
def screened(services, sample_folder):
    """The sample night, screened in this process."""
    return enqueue_folders(services, [sample_folder])


def test_bootstrap_is_explicit_and_idempotent(services):
    first = active_model(services)
    again = bootstrap(services.settings)
    newest = Path(RELEASED_ARTIFACT).stem  # the newest release, by its own name
    assert active_model(again).id == first.id and first.name == newest
    again.engine.dispose()


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
    with pytest.raises(NoSuchBatch):
        batch_status(services, "no-such-batch")
    first = found.batch_id
    assert batch_status(services, first[:8]).batch_id == first  # the eight characters `screen batches` shows
    with pytest.raises(NoSuchBatch, match="no such batch"):
        batch_status(services, first[:4])  # too short to name one
    listed = recent_batches(services)
    assert [line.progress.batch_id for line in listed] == [rerun.progress.batch_id, first]  # newest first
    assert listed[1].progress.total == 11 and listed[1].roots == [str(sample_folder.resolve())]


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
    classifier = Classifier.load(RELEASED, version.artifact_sha256)
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


def test_labels_name_images_by_path_hash_or_uid_and_only_scored_ones(services, screened, sample_folder, tmp_path):
    jpeg = sorted((sample_folder / "jpeg").iterdir())[0]
    dicom = sample_folder / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
    sheet = tmp_path / "reading.csv"
    sheet.write_bytes(b"\xef\xbb\xbfImage;Truth\n" + f"{jpeg};Pneumonia\n".encode())
    assert record_labels(services, read_label_csv(sheet), sheet.name) == 1
    assert record_labels(services, [(sha256_hex(dicom), "normal")], "cli") == 1
    with pytest.raises(LabelError, match="no screened image"):
        record_labels(services, [("0" * 64, "normal")], "cli")
    with pytest.raises(LabelError, match="was not scored"):
        record_labels(services, [(str(sample_folder / "notes.txt"), "normal")], "cli")
    with pytest.raises(LabelError, match="truth must be"):
        record_labels(services, [(str(jpeg), "maybe")], "cli")
    unscreened = tmp_path / "never-enqueued.jpeg"
    unscreened.write_bytes(jpeg.read_bytes() + b"\0")
    with pytest.raises(LabelError, match=f"^{unscreened}: no screened image has this file's content"):
        record_labels(services, [(str(unscreened), "normal")], "cli")
    sheet.write_text(f"image,truth\n{jpeg},pneumonia,extra\n")
    with pytest.raises(LabelError, match="line 2: more cells than the first line names"):
        read_label_csv(sheet)


def test_register_promote_and_roll_back_without_hard_coded_ids(services, tmp_path):
    released = active_model(services)
    registration = register_model(services, artifact_with(RELEASED, tmp_path / "other.zip", name="other"))
    other = registration.version
    assert other.status == "candidate" and other.id != released.id and not registration.already_registered
    again = register_model(services, tmp_path / "other.zip")  # the same bytes: said, nothing added
    assert again.already_registered and again.version.id == other.id
    assert promote_model(services, other.id).id == other.id
    statuses = {summary.id: summary.status for summary in list_models(services)}
    assert statuses.pop(other.id) == "active" and set(statuses.values()) == {"retired"}
    assert len(statuses) == len(RELEASES) and max(statuses) == released.id
    assert roll_back(services).id == released.id
    assert show_model(services, other.id).status == "retired"
    for earlier in sorted(statuses, reverse=True)[1:]:  # further back, release by release, to the first
        assert roll_back(services).id == earlier
    with pytest.raises(ScreeningError, match="no earlier active version"):
        roll_back(services)
    with pytest.raises(ScreeningError, match="not a model artifact"):
        register_model(services, sheet_of(tmp_path))


def sheet_of(folder):
    path = folder / "not-a-model.zip"
    path.write_text("image,truth\n")
    return path


def test_explain_gives_the_workers_probability_and_a_heatmap_over_the_film(services, screened, sample_folder):
    chest = sample_folder / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
    (row,) = [row for row in batch_results(services, None).images if row.path == str(chest)]
    explanation = explain(services, chest)
    assert explanation.probability == pytest.approx(row.probability, rel=1e-5)
    assert explanation.flagged == row.flagged and explanation.threshold == pytest.approx(row.threshold)
    assert explanation.heatmap.shape == (7, 7) and explanation.heatmap.max() == pytest.approx(1.0)
    assert explanation.overlay.ndim == 3 and max(explanation.overlay.shape[:2]) == 1024
    with pytest.raises(NotScreenable):
        explain(services, sample_folder / "dicom" / "ct_small_not_xray.dcm")


def test_the_review_worklist_puts_flagged_first_and_a_verdict_becomes_a_label(services, screened, monkeypatch):
    found = worklist(services)
    rows = found.rows
    assert (found.total, found.page, found.pages, found.first, found.last) == (11, 1, 1, 1, 11) and rows[0].flagged
    scored = [row.probability for row in rows if row.flagged]
    assert scored == sorted(scored, reverse=True)
    skipped = worklist(services, WorklistFilter(status=ImageStatus.SKIPPED)).rows
    assert {row.status for row in skipped} == {ImageStatus.SKIPPED}
    studies = found.studies  # the hip, the CT and the ultrasound have no score: listed last
    assert len(studies) == 5 and studies[0].flagged and studies[0].top is not None
    assert [study.probability is None for study in studies] == [False, False, True, True, True]
    (named,) = [study for study in found.studies if study.identifiers and study.identifiers.patient_id == "9RG1"]
    assert named.identifiers == StudyIdentifiers("9RG1", "exam Number", date(2004, 8, 26))
    assert named.images == 2  # its two instances (JPEG-LS, JPEG lossless), each listed with its image
    assert sorted(name for _, name in named.instances) == [
        "cr_chest_pa_monochrome1_jpeg_lossless.dcm",
        "cr_chest_pa_monochrome1_jpegls.dcm",
    ]
    (top,) = [row for row in rows if row.result_id == named.top]
    assert top.probability == named.probability  # the study's highest
    one_page = dataclasses.replace(services.settings, web=dataclasses.replace(services.settings.web, page_size=1))
    narrow = dataclasses.replace(services, settings=one_page)
    (whole,) = worklist(narrow, page=found.rows.index(top) + 1).studies
    assert whole.uid == named.uid and whole.images == 2 and len(whole.instances) == 2  # beyond its page's one row
    unread = worklist(services, WorklistFilter(view=WorklistView.FLAGGED_UNREAD))
    assert unread.total == sum(1 for row in rows if row.flagged)
    assert image_view(services, rows[0].result_id).next_unread == rows[1].result_id
    first, second, last = (image_view(services, row.result_id) for row in (rows[0], rows[1], rows[-1]))
    assert (first.previous, first.following) == (None, rows[1].result_id)  # in the worklist's order
    assert (second.previous, second.following) == (rows[0].result_id, rows[2].result_id)
    assert (last.previous, last.following) == (rows[-2].result_id, None)
    following = record_verdict(services, rows[0].result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert following == rows[1].result_id  # the next flagged image without a reading
    assert record_verdict(services, rows[0].result_id, Truth.NORMAL, "Dr Bo Second") == rows[1].result_id
    assert worklist(services, WorklistFilter(view=WorklistView.FLAGGED_UNREAD)).total == unread.total - 1
    history = image_view(services, rows[0].result_id).history  # a changed reading keeps the first
    assert [(entry.pneumonia, entry.reader, entry.source) for entry in history] == [
        (False, "Dr Bo Second", "review page"),
        (True, "Dr Ada Reader", "review page"),
    ]
    assert history[0].recorded_at >= history[1].recorded_at and history[0].recorded_at.tzinfo is not None
    not_scored = worklist(services, WorklistFilter(view=WorklistView.NOT_SCORED)).rows
    unscored = [row.result_id for row in rows if row.status in (ImageStatus.SKIPPED, ImageStatus.FAILED)]
    assert unscored and [row.result_id for row in not_scored] == unscored
    view = image_view(services, rows[0].result_id)
    assert view.row.verdict is False and 0 < view.threshold < 1 and view.sends == []
    assert worklist(services, WorklistFilter(batch_id="another-batch")).rows == []
    web = dataclasses.replace(services.settings.web, page_size=4)
    small = dataclasses.replace(services, settings=dataclasses.replace(services.settings, web=web))
    pages = [worklist(small, page=number) for number in (1, 2, 3, 99)]  # every image on one page, none cut off
    assert [(page.page, page.pages, page.first, page.last) for page in pages] == [
        (1, 3, 1, 4), (2, 3, 5, 8), (3, 3, 9, 11), (3, 3, 9, 11)
    ]  # fmt: skip
    assert [row.result_id for page in pages[:3] for row in page.rows] == [row.result_id for row in rows]


def test_the_viewer_gets_the_film_at_its_resolution_with_its_windows_and_a_heatmap_layer(services, screened):
    rows = {row.file_name: row for row in worklist(services).rows}
    lossless = rows["cr_chest_pa_monochrome1_jpeg_lossless.dcm"]
    assert image_view(services, lossless.result_id).presets == ["window 15000/30000"]
    film = cv2.imdecode(np.frombuffer(film_png(services, lossless.result_id), np.uint8), cv2.IMREAD_UNCHANGED)
    assert film.shape == (1955, 1841) and film.dtype == np.uint8  # its own resolution, grey
    with pytest.raises(review.NoSuchImage):
        film_png(services, lossless.result_id, 1)  # it has one window only
    jpeg = next(row for row in rows.values() if row.file_name.endswith(".jpeg"))
    assert image_view(services, jpeg.result_id).presets == []
    layer = cv2.imdecode(np.frombuffer(evidence_png(services, lossless.result_id), np.uint8), cv2.IMREAD_UNCHANGED)
    assert layer.shape[2] == 4 and layer[:, :, 3].min() == 0 and layer[:, :, 3].max() > 0  # drawn only in part
    assert abs(layer.shape[1] / layer.shape[0] - 1841 / 1955) < 0.01  # at the film's aspect


def test_the_worklist_form_filters_with_any_field_left_empty_and_says_what_it_could_not_read():
    assert worklist_filter("", "", "", "") == (WorklistFilter(), [])
    assert worklist_filter(" b1 ", "2026-12-07", "done", "not-scored") == (
        WorklistFilter("b1", date(2026, 12, 7), ImageStatus.DONE, WorklistView.NOT_SCORED),
        [],
    )
    chosen, problems = worklist_filter("", "07/12/2026", "any", "unread")
    assert chosen == WorklistFilter() and len(problems) == 3


def test_the_review_page_shows_and_labels_only_the_film_that_was_screened(services, screened, sample_folder):
    """A path may hold another patient's film by now: nothing read from it is shown beside the old score, and a
    verdict is not stored against the film that was screened; with the film back, all of it works again."""
    row = next(row for row in worklist(services).rows if row.flagged and row.file_name.endswith(".jpeg"))
    film = sample_folder / "jpeg" / row.file_name
    original = film.read_bytes()
    film.write_bytes(next(other for other in film.parent.iterdir() if other != film).read_bytes())
    view = image_view(services, row.result_id)
    assert view.film_problem and "changed since it was screened" in view.film_problem
    for shown in (model_input_png, heatmap_png):
        with pytest.raises(FilmChanged):
            shown(services, row.result_id)
    with pytest.raises(FilmChanged):
        record_verdict(services, row.result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert image_view(services, row.result_id).row.verdict is None and image_view(services, row.result_id).history == []
    assert not (services.settings.data_dir / "heatmaps").exists() or not any(
        (services.settings.data_dir / "heatmaps").iterdir()
    )  # the wrong picture is not kept either
    film.unlink()
    assert "cannot be read" in (image_view(services, row.result_id).film_problem or "")
    film.write_bytes(original)
    view = image_view(services, row.result_id)
    assert view.film_problem is None and view.input_size == 224
    assert model_input_png(services, row.result_id).startswith(b"\x89PNG")
    assert heatmap_png(services, row.result_id).startswith(b"\x89PNG")
    record_verdict(services, row.result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert image_view(services, row.result_id).row.verdict is True


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


def dataset_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


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
        session.execute(sa.update(ResultObject).values(next_attempt_at=utcnow()))
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
        remade = session.get_one(ResultObject, after["moved", "sr"].id)
        assert hd.sr.srread(remade.path).SOPInstanceUID == remade.sop_uid
    (replaced_uid,) = [uid for uid, name in studies.items() if name == "replaced"]
    with services.sessions.begin() as session:  # as when a later batch's report of the study covers its images
        (superseded,) = record_remade(session, batch_id, replaced_uid, [], Retries(5, timedelta(0)))
        assert superseded.status == "superseded"
    sent = {studies[study.study_uid]: study.sent for study in batch_results(services, batch_id).studies}
    assert sent["replaced"] == "report superseded by a later one" and send_due(no_wait) == []
