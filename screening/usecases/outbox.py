"""Results out as DICOM: a screened study's structured report and heatmap captures, written to the outbox and
sent to SCREEN_RESULTS_DESTINATION by C-STORE, each attempt recorded, retried with back-off a bounded number of
times (a Celery task with a broker; the listener's loop without one). An object that could not be made (a file
moved away, a header highdicom refuses) is tried again the same way, with the rest of its study."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom import Dataset

from screening.config import DicomPeer, ImageLimits
from screening.db import outbox as store
from screening.db.batches import aware
from screening.db.leases import Holder, renew_send, renewing, take_send
from screening.db.outbox import MadeObject
from screening.db.results import study_images
from screening.db.schema import Batch, ModelVersion, OutboxObject, utcnow
from screening.dicomnet.objects import (
    ModelIdentity,
    ScreenedImage,
    conformant_header,
    heatmap_capture,
    our_uid,
    screening_report,
)
from screening.dicomnet.scu import SendFailed, send_file
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import read_image_file
from screening.model.registered import RegisteredVersion
from screening.usecases.context import Services
from screening.usecases.explain import CAPTURE_SIDE, explain
from screening.usecases.results import ImageRow, batch_results, operating_point
from screening.vocabulary import ImageStatus, ResultKind, SendStatus

__all__ = [
    "OutboxEntry",
    "dispatch_send",
    "dispatch_sends",
    "make_batch_results",
    "list_outbox",
    "resend",
    "send_due",
]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    study_uid: str
    kind: ResultKind
    status: SendStatus
    attempts: int
    destination: str | None
    last_error: str | None
    retry_in_s: float | None  # pending after a failed attempt: when the next one is due
    notes: str | None = None  # header values left out of the object (attribute names)
    made: bool = True  # False: it could not be made yet (last_error says why)

    @property
    def waiting_for_retry(self) -> bool:
        return self.status == SendStatus.PENDING and self.attempts > 0


def _entry(result: OutboxObject) -> OutboxEntry:
    due = result.next_attempt_at
    return OutboxEntry(
        result.id,
        result.study_uid,
        ResultKind(result.kind),
        SendStatus(result.status),
        result.attempts,
        result.destination,
        result.last_error,
        max(0.0, (aware(due) - utcnow()).total_seconds()) if due else None,
        result.notes,
        bool(result.path),
    )


def make_batch_results(services: Services, batch_id: str) -> list[OutboxEntry]:
    """Bring the DICOM results of each study with screened images in a finished batch up to date, in the outbox, and
    record them for sending: one current report per study, covering every instance of it screened at this version
    (whichever batch brought it), and a heatmap capture of each flagged image. An identical re-send makes nothing
    new; a late instance makes one new report of the whole study that names the one before (Predecessor
    Documents). Idempotent: a batch already exported gets nothing new. An object that cannot be made is recorded
    with its reason and made again later (with back-off, a bounded number of times), and the others are made and
    sent all the same."""
    settings = services.settings
    found = batch_results(services, batch_id)
    with services.sessions() as session:
        if store.objects_of_batch(session, batch_id):
            return []
        version = RegisteredVersion.of(session.get_one(ModelVersion, found.model_version_id))
        studies = {
            study_uid: (study_images(session, study_uid, version.id), store.made_for_study(session, study_uid))
            for study_uid in _screened_studies(found.images)
        }
    destination = str(settings.dicom.results_destination) if settings.dicom.results_destination else None
    folder = _folder(services, batch_id)
    made = [
        one
        for study_uid, (rows, earlier) in studies.items()
        for one in _study_objects(services, version, study_uid, rows, earlier, folder)
    ]
    with services.sessions.begin() as session:
        return [_entry(store.record_object(session, batch_id, one, destination, _retries(services))) for one in made]


def _remake_study(services: Services, unmade: OutboxObject) -> list[OutboxEntry]:
    """Another try at what a study's export could not make: the study's objects made again as the export makes
    them (only what the study still lacks), filling the batch's rows; the objects touched."""
    batch_id, study_uid = unmade.batch_id, unmade.study_uid
    with services.sessions() as session:
        version = RegisteredVersion.of(session.get_one(ModelVersion, session.get_one(Batch, batch_id).model_version_id))
        rows, earlier = study_images(session, study_uid, version.id), store.made_for_study(session, study_uid)
    made = _study_objects(services, version, study_uid, rows, earlier, _folder(services, batch_id))
    with services.sessions.begin() as session:
        return [_entry(one) for one in store.record_remade(session, batch_id, study_uid, made, _retries(services))]


def _folder(services: Services, batch_id: str) -> Path:
    folder = services.settings.data_dir / "outbox" / batch_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _retries(services: Services) -> store.Retries:
    settings = services.settings.dicom
    return store.Retries(settings.send_max_attempts, timedelta(seconds=settings.send_backoff_s))


def _screened_studies(rows: list[ImageRow]) -> list[str]:
    """The studies with a screened DICOM image among `rows`: a study with none gets no report (the results table
    says why)."""
    screened = (
        row.study_uid for row in rows if row.status == ImageStatus.DONE and row.sop_uid and row.probability is not None
    )
    return sorted({uid for uid in screened if uid})


def _study_objects(
    services: Services,
    version: RegisteredVersion,
    study_uid: str,
    rows: list[ImageRow],
    earlier: list[OutboxObject],
    folder: Path,
) -> list[MadeObject]:
    """What a study lacks: a report of all its screened `rows` unless the latest of the `earlier` objects already
    covers exactly them, and a capture of each flagged image that has none; made from headers whose values
    conform."""
    covered = sorted(row.result_id for row in rows if row.result_id is not None)
    reports = [one for one in earlier if one.kind == ResultKind.REPORT]
    captured = {tuple(one.covers or ()): one for one in earlier if one.kind == ResultKind.HEATMAP}
    flagged = [row for row in rows if row.flagged]
    to_capture = [row for row in flagged if (row.result_id,) not in captured]
    current = bool(reports) and reports[-1].covers == covered
    if current and not to_capture:
        return []  # an identical re-send: the study's results stand as they are
    limits = services.settings.image_limits
    try:
        headers = {row.sop_uid: conformant_header(_screened_header(row, limits)) for row in rows}
    except (ImageRejected, pydicom.errors.InvalidDicomError) as error:
        failed = _cannot_make("its images", error)
        return [MadeObject(study_uid, ResultKind.REPORT, "", hd.UID(), None, [], failed, covered)]
    notes = sorted({note for _, image_notes in headers.values() for note in image_notes})
    screened = {
        row.sop_uid: ScreenedImage(
            headers[row.sop_uid][0],
            row.probability or 0.0,
            bool(row.flagged),
            version.threshold if row.threshold is None else row.threshold,  # rows from before operating points
            operating_point(row),
        )
        for row in rows
    }
    model = ModelIdentity(version.name, version.id, version.artifact_sha256)
    device = services.settings.dicom.device_uid
    series_uid = our_uid(device)
    captures: list[tuple[MadeObject, Dataset | None]] = []
    for number, row in enumerate(flagged, start=1):
        if row not in to_capture:
            continue

        def capture(row: ImageRow = row, number: int = number) -> Dataset:
            overlay = explain(services, Path(row.path), version, row.sha256, CAPTURE_SIDE).overlay  # the film screened
            return heatmap_capture(screened[row.sop_uid], overlay, model, series_uid, number, device)

        image_notes = headers[row.sop_uid][1]
        covers = [row.result_id] if row.result_id is not None else []
        made = _made(study_uid, ResultKind.HEATMAP, str(row.sop_uid), image_notes, folder, capture, covers)
        captures.append(made)
    if current:
        return [one for one, _ in captures]
    evidence = [dataset for _, dataset in captures if dataset is not None] + _headers_of(
        [captured[(row.result_id,)] for row in flagged if (row.result_id,) in captured]
    )  # the report names the study's captures
    predecessors = _headers_of(reports[-1:])

    def report() -> Dataset:
        return screening_report(list(screened.values()), model, device, evidence, predecessors)

    made_report, _ = _made(study_uid, ResultKind.REPORT, "", notes, folder, report, covered)
    return [made_report, *(one for one, _ in captures)]


def _headers_of(objects: list[OutboxObject]) -> list[Dataset]:
    """The headers of objects made earlier whose files are still in the outbox (what a report references)."""
    headers: list[Dataset] = []
    for one in objects:
        try:
            headers.append(pydicom.dcmread(one.path, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
    return headers


def _made(
    study_uid: str,
    kind: ResultKind,
    source: str,
    notes: list[str],
    folder: Path,
    make: Callable[[], Dataset],
    covers: list[int],
) -> tuple[MadeObject, Dataset | None]:
    """The object written to the outbox folder, and the dataset; or the reason it could not be made, and None."""
    try:
        dataset = make()
        path = _save(dataset, folder)
    except Exception as error:  # a header value, a file or a disk we could not use: this object fails, no other
        return MadeObject(study_uid, kind, source, hd.UID(), None, notes, _cannot_make("it", error), covers), None
    return MadeObject(study_uid, kind, source, dataset.SOPInstanceUID, path, notes, None, covers), dataset


def _screened_header(row: ImageRow, limits: ImageLimits) -> Dataset:
    """The header of the file that was screened (a path may hold another by now: refused)."""
    data = read_image_file(Path(row.path), limits, row.sha256)
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _cannot_make(what: str, error: Exception) -> str:
    """The reason, coded: never the exception's text, which may quote a header value (a patient's name); our own
    reasons for refusing a file are safe to give."""
    if isinstance(error, ImageRejected):
        return f"could not be made from {what}: {error.reason}"
    return f"could not be made: {type(error).__name__} while reading or encoding {what}"


def _save(dataset: pydicom.Dataset, folder: Path) -> Path:
    path = folder / f"{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def send_object(services: Services, object_id: int) -> OutboxEntry:
    """One attempt for one pending object: made first if it could not be made before, then sent; the outcome is
    recorded (sent, pending with its next attempt, or failed for good once SCREEN_SEND_MAX_ATTEMPTS were made)."""
    settings = services.settings.dicom
    sender = Holder.this_process(services.settings.work_lease)
    with services.sessions.begin() as session:
        result = session.get_one(OutboxObject, object_id)
        to_make = not result.path
        taken = (to_make or settings.results_destination is not None) and take_send(session, object_id, sender)
    if not taken:  # sent, failed for good, kept in the outbox, or being tried by another
        return _entry(result)
    renew = partial(renew_send, object_id=object_id, holder=sender)
    with renewing(services.sessions, sender.heartbeat_s, renew, name=f"send-{object_id}"):
        if to_make:
            remade = _remake_study(services, result)
            dispatch_sends(services, [entry for entry in remade if entry.id != object_id])
        with services.sessions() as session:
            result = session.get_one(OutboxObject, object_id)
        if not (result.path and result.status == SendStatus.PENDING and settings.results_destination):
            return _entry(result)  # not made this time either, superseded, or made with nowhere to send it
        error = _send(Path(result.path), settings.results_destination, settings.ae_title)
    if error:
        logger.warning("sending result object %s failed: %s", object_id, error)
    with services.sessions.begin() as session:
        result = session.get_one(OutboxObject, object_id)
        return _entry(store.record_attempt(session, result, error, _retries(services)))


def _send(path: Path, destination: DicomPeer, calling_ae: str) -> str | None:
    """One C-STORE; the reason it failed, or None."""
    try:
        send_file(path, destination, calling_ae)
    except SendFailed as problem:
        return str(problem)
    except OSError as problem:
        return f"cannot send: {problem.strerror or type(problem).__name__}"
    return None


def dispatch_sends(services: Services, entries: list[OutboxEntry]) -> None:
    """With a broker, each object is sent (or made again, when its next attempt is due) by a Celery task that
    retries it; without one, `send_due` does."""
    if not services.settings.distributed:
        return
    for entry in entries:
        if entry.status == SendStatus.PENDING and (entry.destination or not entry.made):
            dispatch_send(entry.id, entry.retry_in_s)


def dispatch_send(object_id: int, countdown: float | None = None) -> None:
    """Publish the Celery task that sends one result object (with a broker), at once or `countdown` s from now."""
    from screening.queue.celery_app import SEND_RESULT_TASK, app

    app.send_task(SEND_RESULT_TASK, args=[object_id], countdown=countdown or None)


def send_due(services: Services) -> list[OutboxEntry]:
    """Without a broker: one attempt for every object whose next attempt is due."""
    with services.sessions() as session:
        due = [result.id for result in store.due_objects(session)]
    return [send_object(services, object_id) for object_id in due]


def list_outbox(services: Services, statuses: tuple[SendStatus, ...] | None = None) -> list[OutboxEntry]:
    with services.sessions() as session:
        return [_entry(result) for result in store.outbox(session, statuses)]


def resend(services: Services, object_ids: list[int] | None = None) -> list[OutboxEntry]:
    """Failed objects (or the ones named) are pending again, with a fresh count of attempts."""
    with services.sessions.begin() as session:
        return [_entry(result) for result in store.resend(session, object_ids)]


def send_failed_again(services: Services) -> list[OutboxEntry]:
    """`screen outbox --resend`: the failed objects pending again and sent: by the workers with a broker, at once
    in this process without one."""
    entries = resend(services)
    dispatch_sends(services, entries)
    if not services.settings.distributed:
        send_due(services)
    return entries
