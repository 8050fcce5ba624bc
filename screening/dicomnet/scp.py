"""The storage SCP `screen listen` runs: Verification (C-ECHO) and storage of the radiograph classes, in the
uncompressed and the usual compressed transfer syntaxes, from an allow-list of calling AE titles."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
]
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines quote calling AEs and patient UIDs

# What the store handler answers: success, or the standard failure classes of PS3.4 B.2.3.
STORED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
StoreHandler = Callable[[Dataset, bytes], int]  # (dataset, the instance as a DICOM file) -> status


def start_storage_scp(
    ae_title: str, host: str, port: int, allowed_aes: tuple[str, ...], store: StoreHandler
) -> ThreadedAssociationServer:
    """Listen in background threads; `store` decides each instance's status (it must answer only once the
    instance is safe). An association from a calling AE outside `allowed_aes` (empty: any), or to a called AE
    other than `ae_title`, is rejected."""
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True  # an association addressed to another AE title is meant for another node
    ae.require_calling_aet = list(allowed_aes)
    ae.add_supported_context(Verification)
    for storage_class in STORAGE_CLASSES:
        ae.add_supported_context(storage_class, TRANSFER_SYNTAXES)
    for report_class in REPORT_CLASSES:
        ae.add_supported_context(report_class, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    ae.maximum_associations = 16

    def handle_store(event: evt.Event) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
        except Exception:  # undecodable: the sender learns it, the listener goes on
            return CANNOT_UNDERSTAND
        return store(dataset, event.encoded_dataset())

    server = ae.start_server((host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    assert server is not None  # block=False returns the running server
    return server
