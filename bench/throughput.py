"""Throughput end to end (files on disk -> rows in the database) on this machine, printed as a table.

  (a) the published projects' way: one file at a time, one `model.predict` per image, a commit per row;
  (b) this product's embedded path: enqueue (hash, claim) + screen_chunk (decode and preprocessing in a
      thread pool, batched inference, one bulk write per chunk), on the same SQLite database kind.

    .venv/bin/python bench/throughput.py [--cxr224 128] [--full-size 64] [--dicom 64 (per syntax)] [--artifact FILE]

Set KERAS_BACKEND, SCREEN_BATCH_SIZE, SCREEN_CHUNK_SIZE, SCREEN_DECODE_THREADS, SCREEN_DTYPE_POLICY to compare.
"""

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import sqlalchemy as sa
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from screening.config import load_settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.leases import Holder
from screening.db.migrate import upgrade
from screening.db.schema import Result
from screening.imaging.pipeline import prepare_file
from screening.model.device import cpu_computes_bfloat16
from screening.model.preprocessing import PreprocessSpec
from screening.model.registered import RegisteredVersion
from screening.model.released import ensure_active_model, register_artifact
from screening.queue.enqueue import enqueue_batch, start_batch
from screening.usecases.screen_chunk import WorkerRuntime, screen_chunk
from screening.vocabulary import BatchMode

DATA = Path(os.environ.get("SCREEN_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CHEST_FILM = DATA / "dicom" / "cr_chest_pa_monochrome1_jpeg_lossless.dcm"  # 1955 x 1841, 15 bits stored


def chest_in_every_syntax(folder: Path) -> dict[str, Path]:
    """One chest film in each transfer syntax the listener accepts for CR/DX (the shipped encodings, the rest
    transcoded from the lossless film), each a file of its own."""
    folder.mkdir()
    films = {
        "JPEG Lossless SV1": CHEST_FILM,
        "JPEG-LS near-lossless": DATA / "dicom" / "cr_chest_pa_monochrome1_jpegls.dcm",
        "JPEG Baseline (1024 px)": DATA / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm",
    }
    film = pydicom.dcmread(CHEST_FILM)
    pixels = film.pixel_array
    transcoded = {
        "uncompressed (Explicit VR LE)": lambda ds: ds.decompress(),
        "RLE Lossless": lambda ds: ds.compress(RLELossless, pixels),
        "JPEG 2000 Lossless": lambda ds: ds.compress(JPEG2000Lossless, pixels),
        "JPEG-LS Lossless": lambda ds: _encapsulated(ds, JPEGLSLossless, imagecodecs.jpegls_encode(pixels)),
    }
    for name, transcode in transcoded.items():
        dataset = pydicom.dcmread(CHEST_FILM)
        transcode(dataset)
        films[name] = folder / f"{name.split()[0]}-{len(films)}.dcm"
        dataset.save_as(films[name], enforce_file_format=True)
    return films


def _encapsulated(dataset: pydicom.Dataset, syntax: pydicom.uid.UID, frame: bytes | bytearray) -> None:
    dataset.PixelData = encapsulate([bytes(frame)])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = syntax


def make_sets(scratch: Path, n224: int, n_full: int, n_dicom: int) -> dict[str, Path]:
    sets = {}
    for name, sources in (
        ("224-px JPEG", sorted((DATA / "cxr224" / "train" / "PNEUMONIA").iterdir())[:n224]),
        ("full-size JPEG", sorted((DATA / "cxr-fullres" / "train").rglob("*.jpeg"))[:n_full]),
    ):
        if not sources:  # a set of size 0 is left out
            continue
        folder = scratch / name.replace(" ", "_")
        folder.mkdir()
        for source in sources:
            shutil.copy(source, folder / source.name)
        sets[name] = folder
    if not n_dicom:
        return sets
    for syntax, source in chest_in_every_syntax(scratch / "films").items():
        folder = scratch / f"dicom-{len(sets)}"
        folder.mkdir()
        for index in range(n_dicom):
            dataset = pydicom.dcmread(source)
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            # A window one grey level wider per instance (of every set): the same decoding work, pixels of their own,
            # so that no image takes the score of an identical one (the product scores identical pixels once)
            bits = int(dataset.BitsStored)
            dataset.WindowCenter, dataset.WindowWidth = 2 ** (bits - 1), 2**bits + len(sets) * n_dicom + index
            dataset.save_as(folder / f"{index:03d}.dcm")
        sets[f"DICOM {syntax}"] = folder
    return sets


def per_image_baseline(folder: Path, classifier, spec: PreprocessSpec, database: str) -> float:
    """One file at a time, `model.predict` on a batch of one, one INSERT and commit per image."""
    engine = sa.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS baseline (path TEXT, probability REAL)"))
    files = sorted(folder.iterdir())
    started = time.perf_counter()
    for path in files:
        image = prepare_file(path, spec).image
        probability = float(classifier.model.predict(image[None], verbose=0)[0, 0])  # the logit: same work
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO baseline VALUES (:p, :q)"), {"p": str(path), "q": probability})
    engine.dispose()
    return len(files) / (time.perf_counter() - started)


class GpuUtilisation:
    """Mean GPU utilisation (nvidia-smi, every 100 ms) over a `with` block; "-" without an NVIDIA GPU."""

    def __enter__(self) -> "GpuUtilisation":
        self.samples: list[int] = []
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
        self.process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True) if shutil.which(query[0]) else None
        return self

    def __exit__(self, *_) -> None:
        if self.process is not None:
            self.process.terminate()
            self.samples = [int(line) for line in self.process.communicate()[0].split() if line.isdigit()]

    def __str__(self) -> str:
        return f"{np.mean(self.samples):.0f}%" if self.samples else "-"


def batched_pipeline(folder: Path, runtime: WorkerRuntime) -> tuple[float, dict]:
    summaries = []
    started = time.perf_counter()
    batch = start_batch(runtime.session_factory, [str(folder)], BatchMode.IN_PROCESS, timedelta(hours=1))
    enqueue_batch(
        runtime.session_factory,
        batch,
        [str(folder)],
        runtime.settings.chunk_size,
        runtime.settings.image_limits.max_file_bytes,
        lambda ids: summaries.append(screen_chunk(runtime, ids)),
        stale_after=timedelta(hours=1),
    )
    elapsed = time.perf_counter() - started
    with runtime.session_factory() as session:
        rows = session.execute(
            sa.select(Result.read_ms, Result.preprocess_ms, Result.infer_ms).where(
                Result.batch_id == batch, Result.status == "done"
            )
        ).all()
    n = len(rows)
    chunk_s = sum(s.elapsed_ms for s in summaries) / 1000
    times = np.array(rows, dtype=float).mean(axis=0)
    return n / elapsed, {
        "images": n,
        "read+decode": times[0],
        "preprocess": times[1],
        "inference": times[2],
        "write rows": sum(s.write_ms for s in summaries) / n,
        "enqueue (hash, claim)": (elapsed - chunk_s) * 1000 / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cxr224", type=int, default=128)
    parser.add_argument("--full-size", type=int, default=64)
    parser.add_argument("--dicom", type=int, default=64, help="images per transfer syntax")
    parser.add_argument("--artifact", type=Path, help="a model artifact to measure (default: the newest release)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    settings = load_settings()
    database = f"sqlite:///{scratch / 'bench.db'}"
    engine = make_engine(database)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        row = ensure_active_model(session, settings.models_dir, settings.registry_dir)
        if args.artifact:
            row = register_artifact(session, args.artifact, settings.registry_dir, activate=True)
        version = RegisteredVersion.of(row)
    runtime = WorkerRuntime(settings, sessions, Holder.this_process(settings.in_process_lease))
    classifier = runtime.classifier_for(version)
    spec = version.preprocessing
    side = spec.size  # the version's input size
    classifier.assess(np.zeros((settings.inference_batch_size, side, side, 3), np.uint8))  # warm up
    classifier.model.predict(np.zeros((1, side, side, 3), np.float32), verbose=0)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        f"{' with bfloat16 arithmetic' if cpu_computes_bfloat16() else ''}; "
        f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}; batch {settings.inference_batch_size}, "
        f"chunk {settings.chunk_size}, decode threads {settings.decode_threads}, dtype {settings.dtype_policy}; "
        f"model version {version.id} ({version.artifact_path.name[:12]}…, {version.name})"
    )
    header = (
        "set",
        "images",
        "(a) img/s",
        "(b) img/s",
        "(b)/(a)",
        "read+decode",
        "preprocess",
        "inference",
        "write rows",
        "enqueue",
        "GPU util (b)",
    )
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, folder in make_sets(scratch, args.cxr224, args.full_size, args.dicom).items():
        baseline = per_image_baseline(folder, classifier, spec, database)
        with GpuUtilisation() as gpu:
            rate, where = batched_pipeline(folder, runtime)
        ms = [
            f"{where[k]:.1f} ms"
            for k in ("read+decode", "preprocess", "inference", "write rows", "enqueue (hash, claim)")
        ]
        print(
            f"| {name} | {where['images']} | {baseline:.1f} | {rate:.1f} | {rate / baseline:.2f}x | "
            + " | ".join(ms)
            + f" | {gpu} |",
            flush=True,
        )
    print(
        "per-image times of (b): read+decode and preprocess are thread time in the pool (they overlap);"
        " inference is a batch's time divided by its images; write rows and enqueue are wall time per image."
    )
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
