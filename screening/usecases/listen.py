"""`screen listen`: studies in over DICOM, screened once they settle, results back to the archive.

The storage SCP answers a C-STORE with success only once the instance is on disk (the spool). A loop then
turns each study that has settled (no instance for SCREEN_STUDY_SETTLE_SECONDS) into a batch, exports the
results of finished batches (report, heatmaps) and, without a broker, sends what is due. Each step leaves
a mark in the spool, so a listener killed at any point loses nothing when it starts again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset

from screening.dicomnet.objects import made_by_us
from screening.dicomnet.scp import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    REPORT_CLASSES,
    STORED,
    PeerLimits,
    start_storage_scp,
)
from screening.dicomnet.spool import Spool, valid_uid
from screening.usecases.context import Services
from screening.usecases.enqueue import enqueue_folders
from screening.usecases.outbox import dispatch_sends, make_batch_results, send_due
from screening.usecases.recover import recover_stranded
from screening.usecases.results import batch_status

logger = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass(frozen=True)
class ListenerOptions:
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aes: tuple[str, ...] = ()  # with SCREEN_DICOM_ALLOWED_AES: the calling AEs accepted; none: any
    poll_s: float = 1.0


def store_instance(spool: Spool, dataset: Dataset, encoded: bytes, device_uid: str) -> int:
    """The C-STORE's answer: success once the instance is durable; objects the product made (their UIDs are under
    `device_uid`) and reports are accepted and dropped (never screened); an instance without valid UIDs cannot be
    filed."""
    if made_by_us(dataset, device_uid) or dataset.get("SOPClassUID") in REPORT_CLASSES:
        return STORED  # accepted, so that a study pushed whole is not refused; never screened
    study_uid, sop_uid = dataset.get("StudyInstanceUID"), dataset.get("SOPInstanceUID")
    if not (valid_uid(study_uid) and valid_uid(sop_uid)):
        return CANNOT_UNDERSTAND
    try:
        spool.write(study_uid, sop_uid, encoded)
    except OSError as problem:
        logger.error("spool write failed: %s", problem.strerror or type(problem).__name__)
        return OUT_OF_RESOURCES
    return STORED


def process_spool(services: Services, spool: Spool, say: Say = lambda message: None) -> None:
    """One pass: seal settled studies, enqueue sealed ones, export finished ones, send what is due, take over
    what dead workers held."""
    settings = services.settings.dicom
    for incoming in spool.settled(settings.settle_s, settings.max_wait_s):
        spool.seal(incoming)
    for study in spool.unbatched():
        outcome = enqueue_folders(services, [study])
        spool.mark_batch(study, outcome.progress.batch_id)
        say(f"batch {outcome.progress.batch_id}: {outcome.progress.total} instance(s) of a settled study")
    for study, batch_id in spool.unexported():
        try:
            if batch_status(services, batch_id).finished:
                entries = make_batch_results(services, batch_id)  # an object that cannot be made fails alone
                spool.mark_exported(study)
                dispatch_sends(services, entries)
                unmade = sum(not entry.made for entry in entries)
                say(
                    f"batch {batch_id}: {len(entries) - unmade} result object(s) made"
                    + (f", {unmade} could not be made (tried again later)" if unmade else "")
                )
        except Exception as error:  # this study waits for the next pass; the studies after it do not
            logger.error("exporting batch %s failed (%s); the next pass tries again", batch_id, type(error).__name__)
    if not services.settings.distributed:
        send_due(services)
    recover_stranded(services)  # images (and sends) of workers that died: the studies' reports must not wait


def listen(services: Services, options: ListenerOptions, stop: threading.Event, say: Say = lambda m: None) -> None:
    """Serve until `stop` is set. What an earlier listener left in the spool is taken up on the first pass."""
    spool = Spool(services.settings.dicom.spool_dir)
    dicom = services.settings.dicom
    allowed = options.allowed_aes or dicom.allowed_aes
    server = start_storage_scp(
        dicom.ae_title,
        options.host,
        options.port,
        allowed,
        lambda dataset, encoded: store_instance(spool, dataset, encoded, dicom.device_uid),
        PeerLimits(dicom.max_instance_bytes, dicom.associations_per_ae, dicom.idle_timeout_s),
    )
    say(
        f"listening as {services.settings.dicom.ae_title} on {options.host}:{options.port}"
        + (f", from {', '.join(allowed)}" if allowed else "")
    )
    try:
        while True:
            try:
                process_spool(services, spool, say)
            except Exception as error:  # a database or broker blip: the marks on disk let the next pass resume
                logger.error("spool pass failed (%s); the next pass resumes", type(error).__name__)
            if stop.wait(options.poll_s):
                return
    finally:
        server.shutdown()
