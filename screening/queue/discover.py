"""Walk folders one entry at a time and describe each file: identity, kind, DICOM UIDs.

Streaming: nothing holds more than the current directory iterator and a stack of folders, so
a night of 100,000 files costs no more memory than ten. Symlinked folders are not followed
(no loops); symlinked files are, and a broken or looping link is reported, not fatal. A folder
that cannot be listed is reported in the batch too: nothing is skipped silently.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pydicom

from screening.hashing import sha256_hex
from screening.imaging.dicom import identity_of, study_date
from screening.imaging.sniff import SNIFF_BYTES, sniff_kind
from screening.vocabulary import ImageStatus

HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "AccessionNumber", "StudyDate"]


@dataclass(frozen=True)
class FoundFile:
    path: str
    sha256: str | None = None
    kind: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    patient_id: str | None = None  # the worklist's identifiers of the study (patient data: never logged)
    accession: str | None = None
    study_date: date | None = None
    enqueue_error: str | None = None
    enqueue_status: ImageStatus | None = None  # set with enqueue_error: skipped (too large) or failed

    def as_row(self) -> dict:
        return dict(self.__dict__)


def _refused(path: str, reason: str, status: ImageStatus = ImageStatus.FAILED) -> FoundFile:
    return FoundFile(path, enqueue_error=reason, enqueue_status=status)


def _why(error: OSError) -> str:
    return error.strerror or type(error).__name__


def walk(roots: Iterable[str]) -> Iterator[str | FoundFile]:
    """Every file path under `roots`; a folder that cannot be listed is reported as a FoundFile with the reason."""
    for root in roots:
        if not os.path.isdir(root):
            yield root
            continue
        folders = [root]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(entry.path)
                        elif not entry.is_symlink() or not os.path.isdir(entry.path):
                            yield entry.path
            except OSError as error:  # its files cannot be listed: say so, in the batch, and go on
                yield _refused(folder, f"cannot read folder: {_why(error)}; its files were not screened")


def inspect_file(path: str, max_file_bytes: int) -> FoundFile:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            return _refused(path, "not a regular file (a FIFO, socket or device)")
        if info.st_size > max_file_bytes:  # before reading a byte of it
            return _refused(
                path, f"file too large: {info.st_size} bytes exceeds the limit of {max_file_bytes}", ImageStatus.SKIPPED
            )
        sha256 = sha256_hex(Path(path))
        with open(path, "rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except OSError as error:
        return _refused(path, f"cannot read file: {_why(error)}")
    kind = sniff_kind(head)
    if kind != "dicom":
        return FoundFile(path, sha256, kind)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        identity = identity_of(header)
    except Exception:  # the worker decodes it properly and records why it fails
        return FoundFile(path, sha256, kind)
    return FoundFile(
        path,
        sha256,
        kind,
        identity.study_uid,
        identity.series_uid,
        identity.sop_uid,
        _text(header, "PatientID", 64),
        _text(header, "AccessionNumber", 16),
        study_date(header),
    )


def _text(header: pydicom.Dataset, keyword: str, longest: int) -> str | None:
    """A header value as stored text, at most as long as its VR allows; None when absent or empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings about an invalid value quote it
        value = str(header.get(keyword, "") or "").strip()
    return value[:longest] or None


def discover(roots: Iterable[str], max_file_bytes: int, skip: frozenset[str] = frozenset()) -> Iterator[FoundFile]:
    """Every file under `roots` inspected, but those in `skip` (recorded already), which are not read."""
    for entry in walk(roots):
        if (entry.path if isinstance(entry, FoundFile) else entry) in skip:
            continue
        yield entry if isinstance(entry, FoundFile) else inspect_file(entry, max_file_bytes)
