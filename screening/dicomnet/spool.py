"""Where received instances wait: written atomically before the C-STORE is answered, grouped by study.

    incoming/<StudyInstanceUID>/<SOPInstanceUID>.dcm   still arriving
    studies/<StudyInstanceUID>-<n>/…                   settled (no instance for the settle time): one batch each
        .batch      the batch id, once enqueued
        .exported   once its results were made

Every step leaves a mark on disk, so a listener killed at any point and started again finds what is left
to do; instances are never deleted by the listener.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # also what keeps a UID from naming a path outside the spool
PARTIAL = ".partial"
BATCH_MARK, EXPORTED_MARK = ".batch", ".exported"


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another instance of the study arrived), or already gone


def valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and bool(UID.match(value))


@dataclass(frozen=True)
class Spool:
    root: Path
    # Writes (SCP threads) and sealing (the listener's loop) take turns: an instance is never written into a
    # folder that is being moved away.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    def write(self, study_uid: str, sop_uid: str, encoded: bytes) -> Path:
        """Store one instance durably (temporary name, fsync, rename): once this returns, it survives a crash."""
        if not (valid_uid(study_uid) and valid_uid(sop_uid)):
            raise ValueError("StudyInstanceUID or SOPInstanceUID is not a valid UID")
        folder = self.incoming / study_uid
        target = folder / f"{sop_uid}.dcm"
        partial = folder / f"{sop_uid}{PARTIAL}"
        with self.lock:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                with open(partial, "wb") as stream:
                    stream.write(encoded)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(partial, target)
            except BaseException:  # a full disk, say: nothing half-written stays behind to fill it for good
                partial.unlink(missing_ok=True)
                _remove_if_empty(folder)
                raise
        return target

    def settled(self, settle_s: float, max_wait_s: float = math.inf, now: float | None = None) -> list[Path]:
        """Incoming studies whose newest instance arrived at least `settle_s` ago, or whose first arrived at least
        `max_wait_s` ago (a study that never stops receiving is screened all the same)."""
        now = time.time() if now is None else now
        if not self.incoming.is_dir():
            return []
        ready = []
        for folder in sorted(self.incoming.iterdir()):
            arrivals = [path.stat().st_mtime for path in folder.glob("*.dcm")]
            if arrivals and (now - max(arrivals) >= settle_s or now - min(arrivals) >= max_wait_s):
                ready.append(folder)
            elif not arrivals:
                self._drop_stale_partials(folder, now - settle_s)
        return ready

    def _drop_stale_partials(self, folder: Path, before: float) -> None:
        """A study folder with no instance, only writes a crash cut short (never answered with success)."""
        with self.lock:
            for partial in folder.glob(f"*{PARTIAL}"):
                if partial.stat().st_mtime < before:
                    partial.unlink(missing_ok=True)
            _remove_if_empty(folder)

    def seal(self, incoming: Path) -> Path:
        """Move a settled study out of `incoming` (one rename): later instances of it start a new folder."""
        self.studies.mkdir(parents=True, exist_ok=True)
        sealed = self.studies / f"{incoming.name}-{time.time_ns()}"
        with self.lock:
            for partial in incoming.glob(f"*{PARTIAL}"):  # a write a crash interrupted: never answered with success
                partial.unlink()
            os.replace(incoming, sealed)
        return sealed

    def _sealed(self) -> list[Path]:
        return sorted(self.studies.iterdir()) if self.studies.is_dir() else []

    def unbatched(self) -> list[Path]:
        return [folder for folder in self._sealed() if not (folder / BATCH_MARK).exists()]

    def mark_batch(self, folder: Path, batch_id: str) -> None:
        (folder / BATCH_MARK).write_text(batch_id)

    def unexported(self) -> list[tuple[Path, str]]:
        """Sealed studies with a batch whose results were not made yet, with that batch."""
        return [
            (folder, (folder / BATCH_MARK).read_text().strip())
            for folder in self._sealed()
            if (folder / BATCH_MARK).exists() and not (folder / EXPORTED_MARK).exists()
        ]

    def mark_exported(self, folder: Path) -> None:
        (folder / EXPORTED_MARK).write_text("")
