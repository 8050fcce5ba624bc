"""End-to-end run on the distributed stack: `screen enqueue` + N `screen worker` on Redis + PostgreSQL.

    .venv/bin/python bench/distributed.py --workers 2 ../shared/data/cxr-fullres/train

Creates a database of its own on the local PostgreSQL and uses Redis database 14 (flushed),
then prints wall time, images per second, where the time went, and the exactly-once check.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa

SCREEN = str(Path(sys.executable).parent / "screen")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    name = f"screening_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = str(sa.engine.make_url(args.postgres).set(database=name))
    redis.Redis.from_url(args.redis).flushdb()
    scratch = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "SCREEN_DATABASE_URL": database,
        "SCREEN_BROKER_URL": args.redis,
        "SCREEN_DATA_DIR": str(scratch),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    workers = []
    try:
        subprocess.run([SCREEN, "db", "upgrade"], env=env, check=True)
        for index in range(args.workers):
            log = open(scratch / f"worker{index}.log", "w")
            workers.append(
                subprocess.Popen(
                    [SCREEN, "worker", "--hostname", f"bench{index}@%h"], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        while sum(" ready." in (scratch / f"worker{i}.log").read_text() for i in range(args.workers)) < args.workers:
            time.sleep(0.5)
        started = time.perf_counter()
        subprocess.run([SCREEN, "enqueue", "--wait", args.folder], env=env, check=True)
        elapsed = time.perf_counter() - started
        report(database, args.folder, args.workers, elapsed)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def report(database: str, folder: str, workers: int, elapsed: float) -> None:
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        rows, keys, done = connection.execute(
            sa.text(
                "SELECT COUNT(*), COUNT(DISTINCT sha256), SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) FROM results"
            )
        ).one()
        read, prep, infer = connection.execute(
            sa.text("SELECT AVG(read_ms), AVG(preprocess_ms), AVG(infer_ms) FROM results WHERE status = 'done'")
        ).one()
        pending = connection.execute(sa.text("SELECT COUNT(*) FROM batch_items WHERE result_id IS NULL")).scalar_one()
    engine.dispose()
    print(f"files {len(files)} (distinct contents {len(distinct)}), workers {workers}")
    print(f"wall time enqueue->all rows written: {elapsed:.1f} s, {len(files) / elapsed:.2f} images/s")
    print(f"result rows {rows}, distinct images {keys}, done {done}, batch items without a result {pending}")
    print(f"per image: read+decode {read:.1f} ms, preprocess {prep:.1f} ms, inference {infer:.1f} ms (batched)")
    assert rows == keys == len(distinct) and pending == 0, "not exactly once"
    print("exactly once: OK")


if __name__ == "__main__":
    main()
