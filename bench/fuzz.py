"""Fuzzing: thousands of mutants of real JPEG, PNG and DICOM files screened by a real worker.

    .venv/bin/python bench/fuzz.py [--per-kind 700] [--seed 0]

Mutates files from ../shared/data (bit flips, truncations, chunk swaps, header field changes), puts them in
one folder beside untouched originals, and screens it with `screen enqueue --wait` and one `screen worker`
on Redis (database 14, flushed) and a SQLite file of its own. Then checks, from the database and the
worker's log: every file ended done, skipped or failed, each refusal with a reason; the worker never died
or restarted a process; no traceback reached the log; every original was screened. Prints the counts.
"""

import argparse
import collections
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import pydicom
import redis
import sqlalchemy as sa

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCREEN = str(Path(sys.executable).parent / "screen")
SOURCES = {
    "jpeg": sorted((DATA / "cxr224" / "train" / "NORMAL").iterdir())[:20]
    + sorted((DATA / "cxr-fullres" / "train" / "PNEUMONIA").iterdir())[:5],
    "png": sorted((DATA / "adult" / "train" / "NORMAL").glob("*.png"))[:20],
    "dicom": [DATA / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm", DATA / "dicom" / "ct_small_not_xray.dcm"],
}
NOT_RADIOGRAPHS = {"ct_small_not_xray.dcm"}  # an original that must end `skipped`
DICOM_FIELDS: dict[str, list[object]] = {
    "Rows": [0, 1, 65535],
    "Columns": [0, 3, 65535],
    "BitsStored": [0, 1, 17, 32],
    "BitsAllocated": [1, 12, 64],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "", "MONOCHROME3"],
    "SamplesPerPixel": [0, 3, 255],
    "NumberOfFrames": [0, 2, "abc"],
    "Modality": ["", "dx", "MR", "DOE^JANE"],
    "BodyPartExamined": ["HIP", "DOE^JANE", "chest"],
    "WindowWidth": [0, -5, 1e30],
    "WindowCenter": [1e9, -1e9],
    "RescaleSlope": [0, 1e30, -1],
    "PixelRepresentation": [1, 7],
}


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.choice([1, 4, 32, 256])):
        index = rng.randrange(len(mutated))
        mutated[index] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def chunk_swap(data: bytes, rng: random.Random) -> bytes:
    size = rng.randrange(16, max(17, len(data) // 8))
    first, second = sorted(rng.randrange(len(data) - size) for _ in range(2))
    if second < first + size:
        return data[:first] + data[first + size :] + data[first : first + size]
    return (
        data[:first]
        + data[second : second + size]
        + data[first + size : second]
        + data[first : first + size]
        + data[second + size :]
    )


def png_with_fresh_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so that a mutation reaches the decompressor instead of the checksum."""
    out, offset = bytearray(data[:8]), 8
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        body = data[offset + 4 : offset + 8 + length]
        if offset + 12 + length > len(data):
            break
        out += data[offset : offset + 4] + body + zlib.crc32(body).to_bytes(4, "big")
        offset += 12 + length
    return bytes(out + data[offset:])


def header_change(data: bytes, kind: str, rng: random.Random) -> bytes:
    """A plausible-looking header that lies: image size, depth, photometric, modality, window."""
    if kind == "dicom":
        dataset = pydicom.dcmread(io.BytesIO(data))
        for _ in range(rng.choice([1, 2, 3])):
            name = rng.choice(list(DICOM_FIELDS))
            try:
                setattr(dataset, name, rng.choice(DICOM_FIELDS[name]))
            except (ValueError, TypeError, OverflowError):  # pydicom refuses to hold it: try another field
                continue
        buffer = io.BytesIO()
        try:
            dataset.save_as(buffer, enforce_file_format=True)
        except Exception:
            return bit_flips(data, rng)
        return buffer.getvalue()
    mutated = bytearray(data)
    if kind == "png":  # IHDR width and height at 16..24 (the CRC is left stale half of the time)
        offset = 16 + rng.choice([0, 4])
        mutated[offset : offset + 4] = rng.choice([0, 1, 30000, 2**31 - 1]).to_bytes(4, "big")
        return bytes(mutated)
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))  # JPEG frame header: height, width at +5..+9
    if sof < 0:
        return bit_flips(data, rng)
    offset = sof + rng.choice([5, 7])
    mutated[offset : offset + 2] = rng.choice([0, 1, 65535]).to_bytes(2, "big")
    return bytes(mutated)


def make_mutants(folder: Path, per_kind: int, seed: int) -> dict[str, str]:
    """Write the mutants and the originals; return {file name: what it is}."""
    rng = random.Random(seed)
    made: dict[str, str] = {}
    for kind, sources in SOURCES.items():
        for index in range(per_kind):
            source = sources[index % len(sources)]
            data = source.read_bytes()
            how = ["bit flips", "truncation", "chunk swap", "header change"][index % 4]
            if how == "header change":
                mutant = header_change(data, kind, rng)
            else:
                mutant = {"bit flips": bit_flips, "truncation": truncation, "chunk swap": chunk_swap}[how](data, rng)
            if kind == "png" and how in ("bit flips", "header change") and index % 8 < 4:
                mutant, how = png_with_fresh_crcs(mutant), f"{how} (CRCs fixed)"
            name = f"{kind}-{index:04d}-{how.replace(' ', '_')}.{'dcm' if kind == 'dicom' else kind}"
            (folder / name).write_bytes(mutant)
            made[name] = f"{kind} {how}"
        for source in sources:
            name = f"original-{kind}-{source.name}"
            (folder / name).write_bytes(source.read_bytes())
            made[name] = "original (not a radiograph)" if source.name in NOT_RADIOGRAPHS else "original"
    return made


def main() -> None:
    warnings.filterwarnings("ignore")  # pydicom warns about every invalid value we write on purpose
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    folder = scratch / "mutants"
    folder.mkdir()
    made = make_mutants(folder, args.per_kind, args.seed)
    redis.Redis.from_url(args.redis).flushdb()
    database = f"sqlite:///{scratch / 'screening.db'}"
    env = {
        **os.environ,
        "SCREEN_DATABASE_URL": database,
        "SCREEN_BROKER_URL": args.redis,
        "SCREEN_DATA_DIR": str(scratch / "data"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    log_path = scratch / "worker.log"
    subprocess.run([SCREEN, "db", "upgrade"], env=env, check=True)
    with open(log_path, "w") as log:
        worker = subprocess.Popen([SCREEN, "worker", "--hostname", "fuzz@%h"], env=env, stdout=log, stderr=log)
    try:
        while " ready." not in log_path.read_text():
            time.sleep(0.5)
        started = time.perf_counter()
        enqueue = subprocess.run([SCREEN, "enqueue", "--wait", str(folder)], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        alive = worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(60)
    report(database, made, log_path.read_text(), enqueue, elapsed, alive)


def report(database: str, made: dict, log: str, enqueue: subprocess.CompletedProcess, elapsed: float, alive: bool):
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT i.path, COALESCE(i.enqueue_status, CASE WHEN i.enqueue_error IS NOT NULL THEN 'failed' END, "
                "r.status), COALESCE(i.enqueue_error, r.reason) FROM batch_items i LEFT JOIN results r "
                "ON r.id = i.result_id"
            )
        ).all()
    by_name = {Path(path).name: (status, reason) for path, status, reason in rows}
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    for name, what in made.items():
        status, reason = by_name.get(name, ("missing", None))
        counts[what if what.startswith("original") else what.split()[0]][status] += 1
        if status in ("skipped", "failed"):
            reasons[(reason or "NO REASON").split(":")[0][:60]] += 1
    problems = {
        "files without an outcome": sum(
            1 for n in made if by_name.get(n, ("missing",))[0] not in ("done", "skipped", "failed")
        ),
        "refusals without a reason": sum(1 for s, r in by_name.values() if s in ("skipped", "failed") and not r),
        "originals not screened": sum(1 for n, w in made.items() if w == "original" and by_name[n][0] != "done"),
        "originals not skipped": sum(
            1 for n, w in made.items() if w.startswith("original (") and by_name[n][0] != "skipped"
        ),
        "tracebacks in the worker log": log.count("Traceback"),
        "worker processes lost": log.count("WorkerLostError") + log.count("exited with 'signal"),
        "worker died": int(not alive),
    }
    print(
        f"{len(made)} files ({sum(not w.startswith('original') for w in made.values())} mutants) in {elapsed:.0f} s; "
        f"enqueue exit "
        f"{enqueue.returncode}"
    )
    print("| files | done | skipped | failed |\n|---|---|---|---|")
    for what, counter in sorted(counts.items()):
        print(f"| {what} ({counter.total()}) | {counter['done']} | {counter['skipped']} | {counter['failed']} |")
    print("\nmost common reasons:")
    for reason, count in reasons.most_common(12):
        print(f"  {count:5d}  {reason}")
    print("\nchecks:")
    for name, count in problems.items():
        print(f"  {name}: {count}")
    if any(problems.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
