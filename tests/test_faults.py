"""Real faults, real processes, loopback only: nothing is lost and nothing is screened twice."""

import ast
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from faults import OwnRedis, TcpProxy, held_by, result_statuses, screenings
from helpers import (
    CXR224,
    DICOM,
    FULLRES,
    REPOSITORY,
    SCREEN,
    dicom_without_pixels,
    fresh_postgres_schema,
    png_header_only,
    results_by_name,
    run_screen,
    wait_until,
)


def copy_images(folder: Path, sources: list[Path]) -> Path:
    folder.mkdir(parents=True)
    for source in sources:
        shutil.copy(source, folder / source.name)
    return folder


FULL_SIZE = sorted((FULLRES / "train" / "NORMAL").iterdir()) + sorted((FULLRES / "train" / "PNEUMONIA").iterdir())


@pytest.fixture
def env_for(screen_env):
    def make(broker: str, database: str, **extra: str) -> dict:
        env = {**screen_env, "SCREEN_BROKER_URL": broker, "SCREEN_DATABASE_URL": database, **extra}
        run_screen(env, "db", "upgrade")
        return env

    return make


def test_kill9_of_one_of_two_whole_workers_its_chunks_are_back_in_minutes_and_screened_once(
    env_for, redis_url, database_url, start_worker, tmp_path
):
    """The broker would hand the dead worker's chunks back only after an hour (its default visibility timeout).
    PostgreSQL with the default leases (the README's figure); SQLite with leases a quarter as long, the same road
    in a quarter of the wait."""
    database = database_url
    shorter = {} if database.startswith("postgresql") else {"SCREEN_WORK_HEARTBEAT": "5", "SCREEN_WORK_LEASE": "15"}
    env = env_for(redis_url, database, SCREEN_CHUNK_SIZE="2", **shorter)
    folder = copy_images(tmp_path / "night", FULL_SIZE[:12])
    victim = start_worker(env, "victim")
    start_worker(env, "survivor")
    run_screen(env, "enqueue", str(folder))
    wait_until(lambda: held_by(database, "victim") > 0, what="the victim screening a chunk")
    victim.kill9()  # its main process and its pool: nobody is left to reject or renew anything
    killed = time.monotonic()
    wait_until(lambda: result_statuses(database) == {"done": 12}, 120, what="all 12 screened within 2 minutes")
    print(f"all screened {time.monotonic() - killed:.0f} s after the kill")  # the README's figure (pytest -s)
    rows = screenings(database)
    taken_over = [row for row in rows if row[2]]
    assert taken_over and all(holder.startswith("victim@") for _, _, holder in taken_over)
    assert all(count <= 2 for _, count, _ in rows) and all(count == 1 for _, count, holder in rows if not holder)
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(DISTINCT sha256), COUNT(*) FROM results")).one() == (12, 12)
    engine.dispose()
    status = run_screen(env, "status").stdout
    assert f"{len(taken_over)} image(s) held by victim@" in status and "taken over 20" in status


def test_a_slow_chunk_delivered_again_is_not_screened_twice(env_for, redis_url, start_worker, tmp_path):
    """The broker hands a chunk that is still being screened to the other worker (a visibility timeout of 1 s
    against a chunk of 64 full-size films, some 10 s here): the lease its screener renews keeps the other one off
    it."""
    database = f"sqlite:///{tmp_path / 'screening.db'}"
    env = env_for(redis_url, database, SCREEN_VISIBILITY_TIMEOUT="1", SCREEN_CHUNK_SIZE="64")
    folder = copy_images(tmp_path / "night", FULL_SIZE[:64])
    workers = [start_worker(env, "first"), start_worker(env, "second")]
    run_screen(env, "enqueue", str(folder))
    wait_until(lambda: result_statuses(database) == {"done": 64}, 240, what="all 64 screened")
    assert [count for _, count, _ in screenings(database)] == [1] * 64
    logs = "".join(worker.output() for worker in workers)
    assert "'held_elsewhere': 64" in logs  # the second delivery happened, and was turned away


def test_redis_restart_loses_nothing_queued_and_everyone_reconnects(env_for, start_worker, tmp_path):
    own_redis = OwnRedis(tmp_path / "redis")
    own_redis.start()
    try:
        database = f"sqlite:///{tmp_path / 'screening.db'}"
        env = env_for(own_redis.url, database, SCREEN_VISIBILITY_TIMEOUT="10", SCREEN_CHUNK_SIZE="4")
        first = copy_images(tmp_path / "first", FULL_SIZE[:24])
        second = copy_images(tmp_path / "second", FULL_SIZE[24:36])
        start_worker(env)
        run_screen(env, "enqueue", str(first))
        wait_until(lambda: result_statuses(database).get("done", 0) >= 4, what="first chunk screened")
        own_redis.stop()  # with chunks of the first batch still queued in it
        late = subprocess.Popen(
            SCREEN + ["enqueue", str(second)],
            env=env,
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(
            lambda: sum(result_statuses(database).values()) > 24, what="the second batch's first images recorded"
        )
        assert late.poll() is None  # its chunks recorded, and still trying to publish them
        own_redis.start()
        output, _ = late.communicate(timeout=90)
        assert late.returncode == 0, output
        wait_until(lambda: result_statuses(database) == {"done": 36}, what="both batches screened")
    finally:
        own_redis.stop()


def test_database_outage_is_retried_until_the_results_arrive(env_for, redis_url, postgres_url, start_worker, tmp_path):
    database = fresh_postgres_schema(postgres_url)
    env = env_for(redis_url, database)
    proxy = TcpProxy(sa.engine.make_url(database).port or 5432)
    proxy.start()
    through_proxy = sa.engine.make_url(database).set(port=proxy.port).render_as_string(hide_password=False)
    worker = start_worker({**env, "SCREEN_DATABASE_URL": through_proxy})
    proxy.stop()  # connection refused, open connections dropped
    try:
        run_screen(env, "enqueue", str(copy_images(tmp_path / "night", FULL_SIZE[:8])))
        wait_until(lambda: "retry: Retry in" in worker.output(), 60, what="a retry with back-off")
        assert result_statuses(database) == {"queued": 8}
    finally:
        proxy.start()
    wait_until(lambda: result_statuses(database) == {"done": 8}, what="results after the outage")


def test_a_poison_batch_records_every_reason_and_screens_the_good_images(env_for, redis_url, start_worker, tmp_path):
    folder = copy_images(tmp_path / "night", FULL_SIZE[:3])
    good = FULL_SIZE[0].read_bytes()
    (folder / "corrupt.jpeg").write_bytes(good[:3] + os.urandom(4000))
    (folder / "truncated.jpeg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "random.dcm").write_bytes(os.urandom(5000))
    (folder / "nopixels.dcm").write_bytes(dicom_without_pixels())
    (folder / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    (folder / "vanishes.jpeg").write_bytes(good + b"\x00")
    os.mkfifo(folder / "pipe.dcm")
    os.symlink(folder / "loop_b", folder / "loop_a")
    os.symlink(folder / "loop_a", folder / "loop_b")
    os.symlink(folder, folder / "folder_loop")
    shutil.copy(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm", folder / "chest.dcm")

    env = env_for(redis_url, f"sqlite:///{tmp_path / 'screening.db'}", SCREEN_CHUNK_SIZE="64")
    batch_id = run_screen(env, "enqueue", str(folder)).stdout.split()[1]  # one chunk; no worker yet
    (folder / "vanishes.jpeg").unlink()  # unreadable by the time a worker opens it
    start_worker(env)
    run_screen(env, "enqueue", "--wait", str(folder / "chest.dcm"))  # waits behind the poison chunk
    rows = results_by_name(env, batch_id)
    expected = {
        "corrupt.jpeg": ("failed", "corrupt or truncated image header"),
        "truncated.jpeg": ("failed", "truncated JPEG"),
        "empty.jpeg": ("failed", "empty file"),
        "random.dcm": ("skipped", "not a JPEG, PNG or DICOM file"),
        "nopixels.dcm": ("skipped", "no pixel data"),
        "bomb.png": ("skipped", "image too large"),
        "vanishes.jpeg": ("failed", "cannot read file: No such file or directory"),
        "pipe.dcm": ("failed", "not a regular file"),
        "loop_a": ("failed", "Too many levels of symbolic links"),
        "loop_b": ("failed", "Too many levels of symbolic links"),
    }
    for name, (status, reason) in expected.items():
        assert rows[name]["status"] == status and reason in rows[name]["reason"], (name, rows[name])
    for source in FULL_SIZE[:3] + [DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"]:
        row = rows[source.name] if source.name in rows else rows["chest.dcm"]
        assert row["status"] == "done" and row["probability"] is not None
    assert "folder_loop" not in rows and len(rows) == 14


def screened_by_worker(log: str) -> int:
    """Images a worker actually screened, from the PHI-free summaries Celery logs per task."""
    return sum(sum(ast.literal_eval(m).values()) for m in re.findall(r"'statuses': (\{[^}]*\})", log))


def test_the_same_folder_enqueued_twice_at_once_is_screened_once(
    env_for, redis_url, postgres_url, start_worker, tmp_path
):
    database = fresh_postgres_schema(postgres_url)
    env = env_for(redis_url, database, SCREEN_CHUNK_SIZE="4")
    folder = copy_images(tmp_path / "night", FULL_SIZE[:24])
    worker = start_worker(env)
    shells = [
        subprocess.Popen(
            SCREEN + ["enqueue", "--wait", str(folder)],
            env=env,
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [shell.communicate(timeout=120)[0] for shell in shells]
    assert all(shell.returncode == 0 for shell in shells), outputs
    assert result_statuses(database) == {"done": 24}
    wait_until(lambda: screened_by_worker(worker.output()) >= 24, 30, what="worker summaries logged")
    assert screened_by_worker(worker.output()) == 24  # not 48: the second shell found the images claimed


def peak_rss_mb(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    process = subprocess.Popen(
        command, env=env, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(re.search(r"VmRSS:\s+(\d+)", status).group(1)))
        except (FileNotFoundError, AttributeError):
            pass
        time.sleep(0.05)
    output = process.stdout.read()
    return peak / 1024, subprocess.CompletedProcess(command, process.returncode, output)


def test_enqueue_memory_stays_flat_over_20000_files(env_for, redis_url, start_worker, tmp_path, capsys):
    """20,000 files (hard links to 40 shared images) in 20 folders; memory compared with 2,000 files."""
    sources = sorted((CXR224 / "NORMAL").iterdir())[:20] + sorted((CXR224 / "PNEUMONIA").iterdir())[:20]
    night = tmp_path / "night"
    for index in range(20_000):
        folder = night / f"series{index // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(sources[index % 40], folder / f"{index:05d}.jpeg")
    env = env_for(redis_url, f"sqlite:///{tmp_path / 'screening.db'}", SCREEN_CHUNK_SIZE="500")
    start_worker(env)
    small_peak, small = peak_rss_mb(
        SCREEN + ["enqueue", "--wait", str(night / "series00"), str(night / "series01")], env
    )
    large_peak, large = peak_rss_mb(SCREEN + ["enqueue", "--wait", str(night)], env)
    assert small.returncode == 0 and large.returncode == 0, large.stdout
    assert "20000 files" in large.stdout and "20000 done" in large.stdout
    assert result_statuses(f"sqlite:///{tmp_path / 'screening.db'}") == {"done": 40}
    with capsys.disabled():
        print(f"\nenqueue peak RSS: {small_peak:.0f} MB for 2,000 files, {large_peak:.0f} MB for 20,000 files")
    assert large_peak < small_peak + 30


def test_requeue_recovers_a_batch_whose_messages_were_lost(env_for, redis_url, start_worker, tmp_path):
    database = f"sqlite:///{tmp_path / 'screening.db'}"
    env = env_for(redis_url, database, SCREEN_CHUNK_SIZE="4")
    batch_id = run_screen(env, "enqueue", str(copy_images(tmp_path / "night", FULL_SIZE[:8]))).stdout.split()[1]
    redis.Redis.from_url(redis_url).flushdb()  # a broker that lost its queue (no persistence, say)
    start_worker(env)
    run_screen(env, "enqueue", "--wait", str(copy_images(tmp_path / "later", FULL_SIZE[8:9])))  # the worker consumes
    assert result_statuses(database) == {"queued": 8, "done": 1}  # but the lost batch never reaches it by itself
    assert "8 images dispatched again" in run_screen(env, "requeue", batch_id).stdout
    wait_until(lambda: result_statuses(database) == {"done": 9}, what="requeued batch screened")
    assert "0 images dispatched again" in run_screen(env, "requeue").stdout


def test_enqueue_says_how_to_recover_when_the_broker_stays_away(env_for, tmp_path):
    from helpers import free_port

    env = env_for(
        f"redis://127.0.0.1:{free_port()}/0", f"sqlite:///{tmp_path / 'screening.db'}", SCREEN_PUBLISH_MAX_RETRIES="1"
    )
    failed = run_screen(env, "enqueue", str(copy_images(tmp_path / "night", FULL_SIZE[:2])), check=False)
    assert failed.returncode != 0 and "the broker could not be reached" in failed.stderr
    assert "run `screen requeue" in failed.stderr and "Traceback" not in failed.stderr
