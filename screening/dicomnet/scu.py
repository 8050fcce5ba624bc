"""Sending a DICOM file to a peer by C-STORE: one association per file, a clear reason when it fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pydicom
from pynetdicom import AE, Association

from screening.config import DicomPeer
from screening.errors import Unavailable

SUCCESS = 0x0000


class SendFailed(Unavailable):
    pass


def _why_not_established(association: Association, peer: DicomPeer) -> str:
    if association.is_rejected:
        return f"association with {peer} rejected"
    try:  # pynetdicom reports a connection nobody accepted as an aborted association: say which it was
        socket.create_connection((peer.host, peer.port), timeout=5).close()
    except OSError as problem:
        return f"cannot connect to {peer} ({problem.strerror or type(problem).__name__})"
    return f"association with {peer} {'aborted' if association.is_aborted else 'not established'}"


def send_file(path: Path, peer: DicomPeer, calling_ae: str, timeout_s: float = 30) -> None:
    """C-STORE the file at `path` to `peer`; SendFailed says why it was not stored (never patient data)."""
    dataset = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not association.is_established:
        raise SendFailed(_why_not_established(association, peer))
    try:
        status = association.send_c_store(dataset)
    finally:
        association.release()
    if not status or "Status" not in status:
        raise SendFailed(f"no C-STORE response from {peer}")
    if status.Status != SUCCESS:
        raise SendFailed(f"{peer} answered the C-STORE with status 0x{status.Status:04X}")
