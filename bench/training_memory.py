"""Peak memory of `screen train` (one fine-tuning epoch, and the applicability gate) on N and on 2N images:
streaming keeps it flat.

    python bench/training_memory.py --images 400

Prints the peak resident memory of each run and how much doubling the images raised it (the target is
under 20%). The images are the first N (and 2N) of each class of the 224-px training split.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("SCREEN_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCREEN = str(Path(sys.executable).parent / "screen")


def training_set(folder: Path, per_class: int) -> Path:
    for label in ("NORMAL", "PNEUMONIA"):
        (folder / label).mkdir(parents=True)
        for source in sorted((DATA / "cxr224" / "train" / label).iterdir())[:per_class]:
            shutil.copy(source, folder / label / source.name)
    return folder


def peak_of_one_run(folder: Path, scratch: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one `screen train` run in a child process of its own."""
    config = scratch / "config.json"
    config.write_text(json.dumps({"epochs": 3, "fine_tune_batch_size": 16}))
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = {**os.environ, "SCREEN_DATA_DIR": str(scratch / "data")}
    command = [SCREEN, "train", str(folder), "--out", str(scratch / "m.zip"), "--config", str(config)]
    command += ["--out-of-scope", str(DATA / "out-of-scope")]
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe, *command, "--fine-tune-epochs", "1", "--no-register"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip()) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400, help="Images of the smaller run (half per class).")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    results = []
    for total in (args.images, 2 * args.images):
        scratch = Path(tempfile.mkdtemp())
        peak, seconds = peak_of_one_run(training_set(scratch / "train", total // 2), scratch)
        results.append((total, peak, seconds))
        shutil.rmtree(scratch)
    print("| images | peak RSS | wall time |\n|---|---|---|")
    for total, peak, seconds in results:
        print(f"| {total} | {peak:.0f} MB | {seconds:.0f} s |")
    print(f"doubling the images raised peak memory by {100 * (results[1][1] / results[0][1] - 1):.1f}%")


if __name__ == "__main__":
    main()
