"""The storage SCP `screen listen` runs: Verification (C-ECHO) and storage of the radiograph classes, in the
uncompressed and the usual compressed transfer syntaxes, from an allow-list of calling AE titles."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedSRStorage,
    SecondaryCaptureImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

STORAGE_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
# Structured reports are accepted so that an archive pushing a whole study (with an earlier report of ours, or a
# radiologist's) is not refused; they are never screened.
REPORT_CLASSES = (BasicTextSRStorage, EnhancedSRStorage, ComprehensiveSRStorage, Comprehensive3DSRStorage)
TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
logger = logging.getLogger(__name__)
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines quote calling AEs and patient UIDs

# What the store handler answers: success, or the standard failure classes of PS3.4 B.2.3.
STORED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
StoreHandler = Callable[[Dataset, bytes], int]  # (dataset, the instance as a DICOM file) -> status


@dataclass(frozen=True)
class PeerLimits:
    """What one peer may take of the node: so that no sender, careless or hostile, closes it to the others."""

    max_instance_bytes: int  # one received message at most (an association sending more is aborted)
    associations_per_ae: int  # at once, per calling AE title (the node takes MAX_ASSOCIATIONS in all)
    idle_timeout_s: int  # an association with no traffic for this long is closed


MAX_ASSOCIATIONS = 16


def native_pixels_missing(dataset: Dataset) -> bool:
    """Uncompressed pixel data shorter than its rows, columns, samples, bits and frames declare (a length field
    that promises gigabytes over a thousand bytes of data)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in dataset or syntax is None or syntax.is_compressed:
        return False
    try:
        bits, frames = int(dataset.BitsAllocated), int(dataset.get("NumberOfFrames") or 1)
        declared = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel") or 1) * frames
        return len(dataset.PixelData) < declared * bits // 8
    except (AttributeError, TypeError, ValueError):
        return True  # pixel data without the attributes that say how long it is


def start_storage_scp(
    ae_title: str, host: str, port: int, allowed_aes: tuple[str, ...], store: StoreHandler, limits: PeerLimits
) -> ThreadedAssociationServer:
    """Listen in background threads; `store` decides each instance's status (it must answer only once the
    instance is safe). An association from a calling AE outside `allowed_aes` (empty: any), or to a called AE
    other than `ae_title`, is rejected; one beyond the calling AE's share, one whose message grows past the size
    limit (pynetdicom buffers a message whole before its handler runs, so it is aborted as it arrives, not
    answered) and one left idle are closed. Pixel data shorter than its header declares is refused (0xC000)."""
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True  # an association addressed to another AE title is meant for another node
    ae.require_calling_aet = list(allowed_aes)
    ae.add_supported_context(Verification)
    for storage_class in STORAGE_CLASSES:
        ae.add_supported_context(storage_class, TRANSFER_SYNTAXES)
    for report_class in REPORT_CLASSES:
        ae.add_supported_context(report_class, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    ae.maximum_associations = MAX_ASSOCIATIONS
    ae.network_timeout = limits.idle_timeout_s
    received: dict[int, int] = {}  # bytes of the message in progress, per association

    def handle_store(event: evt.Event) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
        except Exception:  # undecodable: the sender learns it, the listener goes on
            return CANNOT_UNDERSTAND
        if native_pixels_missing(dataset):
            logger.warning("instance refused: its pixel data is shorter than its header declares")
            return CANNOT_UNDERSTAND
        return store(dataset, event.encoded_dataset())

    def count_received(event: evt.Event) -> None:
        key = id(event.assoc)
        received[key] = received.get(key, 0) + len(event.data)
        if received[key] > limits.max_instance_bytes:
            received[key] = 0
            logger.warning("association aborted: a message larger than SCREEN_DICOM_MAX_INSTANCE_BYTES")
            event.assoc.abort()

    def message_received(event: evt.Event) -> None:
        received[id(event.assoc)] = 0  # a whole message arrived within the limit: count the next one afresh

    def share_of_one_peer(event: evt.Event) -> None:
        calling = event.assoc.requestor.ae_title
        same = [assoc for assoc in ae.active_associations if assoc.requestor.ae_title == calling]
        if len(same) > limits.associations_per_ae:
            logger.warning("association aborted: its calling AE holds %d already", limits.associations_per_ae)
            event.assoc.abort()

    def forget(event: evt.Event) -> None:
        received.pop(id(event.assoc), None)

    handlers: list[Any] = [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_DATA_RECV, count_received),
        (evt.EVT_DIMSE_RECV, message_received),
        (evt.EVT_ESTABLISHED, share_of_one_peer),
        (evt.EVT_RELEASED, forget),
        (evt.EVT_ABORTED, forget),
    ]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    assert server is not None  # block=False returns the running server
    return server
