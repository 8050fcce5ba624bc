"""Results out as DICOM: a screened study's structured report and heatmap captures, written to the outbox and
sent to SCREEN_RESULTS_DESTINATION by C-STORE, each attempt recorded, retried with back-off a bounded number of
times (a Celery task with a broker; the listener's loop without one)."""

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
from screening.db.schema import ImageStatus, ModelVersion, ResultKind, ResultObject, SendStatus, utcnow
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
from screening.usecases.context import Services
from screening.usecases.explain import CAPTURE_SIDE, explain
from screening.usecases.results import ImageRow, batch_results, operating_point

__all__ = [
    "OutboxEntry",
    "SendStatus",
    "dispatch_send",
    "dispatch_sends",
    "export_batch",
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

    @property
    def waiting_for_retry(self) -> bool:
        return self.status == SendStatus.PENDING and self.attempts > 0


def _entry(result: ResultObject) -> OutboxEntry:
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
    )


def _study_images(rows: list[ImageRow]) -> dict[str, list[ImageRow]]:
    """Screened DICOM images by study: a study with none gets no report (the results table says why)."""
    studies: dict[str, list[ImageRow]] = {}
    for row in rows:
        if row.status == ImageStatus.DONE and row.study_uid and row.sop_uid and row.probability is not None:
            studies.setdefault(row.study_uid, []).append(row)
    return studies


def export_batch(services: Services, batch_id: str) -> list[OutboxEntry]:
    """Write the report of each screened study of a finished batch, and a heatmap capture of each flagged image,
    to the outbox; record them for sending. Idempotent: a batch already exported gets nothing new. An object that
    cannot be made is recorded as failed with its reason, and the others are made and sent all the same."""
    settings = services.settings
    found = batch_results(services, batch_id)
    with services.sessions() as session:
        if store.objects_of_batch(session, batch_id):
            return []
        version = session.get_one(ModelVersion, found.model_version_id)
    destination = str(settings.dicom.results_destination) if settings.dicom.results_destination else None
    folder = settings.data_dir / "outbox" / batch_id
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        one
        for study_uid, rows in _study_images(found.images).items()
        for one in _study_objects(services, version, study_uid, rows, folder)
    ]
    with services.sessions.begin() as session:
        return [_entry(store.record_object(session, batch_id, one, destination)) for one in made]


def _study_objects(
    services: Services, version: ModelVersion, study_uid: str, rows: list[ImageRow], folder: Path
) -> list[MadeObject]:
    """A study's report and its flagged images' captures, each made from headers whose values conform."""
    limits = services.settings.image_limits
    try:
        headers = {row.sop_uid: conformant_header(_screened_header(row, limits)) for row in rows}
    except (ImageRejected, pydicom.errors.InvalidDicomError) as error:
        return [MadeObject(study_uid, ResultKind.REPORT, "", hd.UID(), None, [], _cannot_make("its images", error))]
    notes = sorted({note for _, image_notes in headers.values() for note in image_notes})
    screened = [
        ScreenedImage(
            headers[row.sop_uid][0],
            row.probability or 0.0,
            bool(row.flagged),
            version.threshold if row.threshold is None else row.threshold,  # rows from before operating points
            operating_point(row),
        )
        for row in rows
    ]
    model = ModelIdentity(version.name, version.id, version.artifact_sha256)
    device = services.settings.dicom.device_uid
    series_uid = our_uid(device)
    captures: list[tuple[MadeObject, Dataset | None]] = []
    flagged = [(row, image) for row, image in zip(rows, screened, strict=True) if row.flagged]
    for number, (row, image) in enumerate(flagged, start=1):

        def capture(row: ImageRow = row, image: ScreenedImage = image, number: int = number) -> Dataset:
            overlay = explain(services, Path(row.path), version, row.sha256, CAPTURE_SIDE).overlay  # the film screened
            return heatmap_capture(image, overlay, model, series_uid, number, device)  # the header suffices

        captures.append(
            _made(study_uid, ResultKind.HEATMAP, str(row.sop_uid), headers[row.sop_uid][1], folder, capture)
        )
    made = [dataset for _, dataset in captures if dataset is not None]  # the report references them
    report, _ = _made(
        study_uid, ResultKind.REPORT, "", notes, folder, lambda: screening_report(screened, model, device, made)
    )
    return [report, *(one for one, _ in captures)]


def _made(
    study_uid: str, kind: ResultKind, source: str, notes: list[str], folder: Path, make: Callable[[], Dataset]
) -> tuple[MadeObject, Dataset | None]:
    """The object written to the outbox folder, and the dataset; or the reason it could not be made, and None."""
    try:
        dataset = make()
    except Exception as error:  # a header value or a file we could not use: this object fails, no other
        return MadeObject(study_uid, kind, source, hd.UID(), None, notes, _cannot_make("it", error)), None
    return MadeObject(study_uid, kind, source, dataset.SOPInstanceUID, _save(dataset, folder), notes), dataset


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
    """One attempt to send one pending object; the outcome is recorded (sent, pending with its next attempt, or
    failed for good once SCREEN_SEND_MAX_ATTEMPTS were made)."""
    settings = services.settings.dicom
    sender = Holder.this_process(services.settings.work_lease)
    with services.sessions.begin() as session:
        taken = settings.results_destination is not None and take_send(session, object_id, sender)
        result = session.get_one(ResultObject, object_id)
        path = Path(result.path)
    if not taken or settings.results_destination is None:  # sent, failed for good, or being sent by another
        return _entry(result)
    renew = partial(renew_send, object_id=object_id, holder=sender)
    with renewing(services.sessions, sender.heartbeat_s, renew, name=f"send-{object_id}"):
        error = _send(path, settings.results_destination, settings.ae_title)
    if error:
        logger.warning("sending result object %s failed: %s", object_id, error)
    with services.sessions.begin() as session:
        result = session.get_one(ResultObject, object_id)
        backoff = timedelta(seconds=settings.send_backoff_s)
        return _entry(store.record_attempt(session, result, error, settings.send_max_attempts, backoff))


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
    """With a broker, each object is sent by a Celery task that retries it; without one, `send_due` sends."""
    if not services.settings.distributed:
        return
    for entry in entries:
        if entry.destination and entry.status == SendStatus.PENDING:
            dispatch_send(entry.id)


def dispatch_send(object_id: int) -> None:
    """Publish the Celery task that sends one result object (with a broker)."""
    from screening.queue.celery_app import SEND_RESULT_TASK, app

    app.send_task(SEND_RESULT_TASK, args=[object_id])


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
