"""A data folder's manifest.csv: what it says of each file (its source, patient and licence), read one way for the
labelled sources and the out-of-scope images alike; and the one filter for commercial use that reads it."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from screening.model.manifest import non_commercial

NO_PATIENT = ("", "-", "–")  # what manifests write where they name no patient


@dataclass(frozen=True)
class FileNotes:
    source: str | None
    patient: str | None  # None where the manifest names none
    licence: str | None


UNDESCRIBED = FileNotes(None, None, None)  # a file no manifest.csv names


def described_files(folder: Path) -> dict[Path, FileNotes]:
    """The rows of the manifest.csv in `folder` (or its parent, for a class folder's split), by the resolved path
    of the file each describes; empty without one."""
    for root in (folder, folder.parent):
        manifest = root / "manifest.csv"
        if manifest.is_file():
            with open(manifest, newline="", encoding="utf-8") as stream:
                rows = list(csv.DictReader(stream))
            if rows and "file" in rows[0]:
                return {(root / row["file"]).resolve(): _notes(row) for row in rows}
    return {}


def _notes(row: dict[str, str]) -> FileNotes:
    patient = (row.get("patient_id") or "").strip()
    licence = row.get("license") or row.get("licence")
    return FileNotes(row.get("source") or None, patient if patient not in NO_PATIENT else None, licence or None)


class Licensed(Protocol):
    @property
    def licence(self) -> str | None: ...


Item = TypeVar("Item", bound=Licensed)


def for_commercial_use(items: Iterable[Item], only: bool) -> list[Item]:
    """`items`, less those whose licence forbids commercial use when `only` (`screen train --commercial-use-only`)."""
    return [item for item in items if not (only and non_commercial(item.licence))]
