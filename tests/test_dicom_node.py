"""`screen listen` between a real storage SCU (pynetdicom's storescu) and a real archive (pynetdicom's storescp):
studies in over DICOM, structured reports and heatmaps back into the same study, faults on either side."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from faults import held_by, screenings
from helpers import DICOM, ScreenProcess, free_port, own_errors, run_screen, wait_until
from pydicom.errors import InvalidDicomError
from pydicom.uid import RLELossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from screening.config import load_settings
from screening.queue import celery_app
from screening.usecases.context import connect
from screening.usecases.outbox import dispatch_sends, list_outbox, make_batch_results
from screening.usecases.results import recent_batches

pytestmark = pytest.mark.e2e


def study_of(folder: Path, sources: list[str]) -> list[Path]:
    """Copies of the sample files as the instances of one new study."""
    folder.mkdir(parents=True)
    study = generate_uid()
    paths = []
    for index, name in enumerate(sources):
        dataset = pydicom.dcmread(DICOM / name)
        dataset.StudyInstanceUID = study
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.save_as(folder / f"{index}.dcm")
        paths.append(folder / f"{index}.dcm")
    return paths


def storescu(
    port: int, paths: list[Path], calling: str = "MODALITY", called: str = "SCREEN"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(command + ["-aet", calling, "-aec", called, "-cx", "-v"], capture_output=True, text=True)


@pytest.fixture
def node(screen_env, tmp_path):
    """An archive (storescp) and the environment of a listener that sends its results there."""
    archive_port, archive_dir = free_port(), tmp_path / "archive"
    archive_dir.mkdir()
    archive = subprocess.Popen(
        [sys.executable, "-m", "pynetdicom", "storescp", str(archive_port), "-aet", "ARCHIVE", "-od", str(archive_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **screen_env,
        "SCREEN_STUDY_SETTLE_SECONDS": "8",
        "SCREEN_RESULTS_DESTINATION": f"ARCHIVE@127.0.0.1:{archive_port}",
    }
    listeners: list[ScreenProcess] = []

    def start(port: int, environment: dict = env) -> ScreenProcess:
        arguments = ["listen", "--port", str(port), "--allow", "MODALITY"]
        log = tmp_path / f"listener-{len(listeners)}.log"
        listeners.append(ScreenProcess(environment, arguments, log, "listening as SCREEN", timeout=60))
        return listeners[-1]

    yield env, archive_dir, start
    for listener in listeners:
        listener.stop()
    archive.terminate()
    archive.wait(10)


def received_files(folder: Path) -> dict[Path, pydicom.Dataset]:
    """The objects the archive has written; one it is still writing (it cannot be read yet) is left for later."""
    datasets = {}
    for path in sorted(folder.iterdir()):
        try:
            datasets[path] = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError):
            continue
    return datasets


def received(folder: Path) -> list[pydicom.Dataset]:
    return list(received_files(folder).values())


def received_report(folder: Path) -> hd.sr.ComprehensiveSR:
    (path,) = [path for path, dataset in received_files(folder).items() if dataset.Modality == "SR"]
    return hd.sr.srread(path)


def test_a_study_sent_to_the_listener_comes_back_as_a_report_and_heatmaps_in_its_study(node, tmp_path):
    env, archive_dir, start = node
    port = free_port()
    chest = study_of(
        tmp_path / "chest",
        [
            "cr_chest_pa_monochrome1_jpeg_lossless.dcm",
            "cr_chest_pa_monochrome1_jpegls.dcm",
            "cr_chest_pa_monochrome2_jpeg_baseline.dcm",
        ],
    )
    hip = study_of(tmp_path / "hip", ["cr_hip_jpegls_lossless.dcm"])
    listener = start(port)
    assert storescu(port, chest[:2]).returncode == 0
    listener.kill9()  # mid-study: two instances in, one to come
    start(port)
    assert storescu(port, chest[2:] + hip).returncode == 0
    stranger = storescu(port, chest[:1], calling="STRANGER")
    assert "Calling AE title not recognised" in stranger.stderr + stranger.stdout
    elsewhere = storescu(port, chest[:1], called="ANOTHER_NODE")
    assert "Called AE title not recognised" in elsewhere.stderr + elsewhere.stdout
    ct = storescu(port, [DICOM / "ct_small_not_xray.dcm"])
    assert "No accepted presentation context" in ct.stderr + ct.stdout or ct.returncode != 0

    chest_study = pydicom.dcmread(chest[0]).StudyInstanceUID
    wait_until(lambda: any(d.Modality == "SR" for d in received(archive_dir)), 180, 1, "the report at the archive")
    wait_until(lambda: "pending" not in run_screen(env, "outbox").stdout, 60, 1, "the heatmaps sent after the report")
    objects = received(archive_dir)
    reports = [d for d in objects if d.SOPClassUID == ComprehensiveSRStorage]
    captures = [d for d in objects if d.SOPClassUID == SecondaryCaptureImageStorage]
    assert len(reports) == 1 and reports[0].StudyInstanceUID == chest_study  # the hip study has none
    report = received_report(archive_dir)
    groups = report.content.get_image_measurement_groups()
    assert len(groups) == 3  # every instance, although the listener was killed between them
    probabilities = [
        m.value for g in groups for m in g.get_measurements() if m.name.meaning == "Probability of pneumonia"
    ]
    flagged = [g for g in groups if g.get_qualitative_evaluations()[0].value.meaning == "Present"]
    assert len(probabilities) == 3 and all(0 <= p <= 1 for p in probabilities)
    assert report.VerificationFlag == "UNVERIFIED" and "Algorithm Version" in str(report)
    assert len(captures) == len(flagged) and all(c.StudyInstanceUID == chest_study for c in captures)
    for path in received_files(archive_dir):  # what an archive's validator says of every object we sent
        assert own_errors(path) == [], path.name

    outbox = run_screen(env, "outbox").stdout
    assert outbox.count("sent") == 1 + len(captures)
    batch = re.search(r"batch (\w+): 3 instance", (tmp_path / "listener-1.log").read_text()).group(1)
    (study,) = json.loads(run_screen(env, "results", batch, "--studies", "--format", "json").stdout)
    assert study["study_uid"] == chest_study and study["sent"].startswith("report sent")

    # The archive pushes the study back whole: our report and captures, and a report of someone else's
    theirs = pydicom.dcmread(next(path for path, d in received_files(archive_dir).items() if d.Modality == "SR"))
    theirs.Manufacturer, theirs.SOPInstanceUID = "ACME", generate_uid()
    theirs.file_meta.MediaStorageSOPInstanceUID = theirs.SOPInstanceUID
    theirs.save_as(tmp_path / "theirs.dcm")
    pushed = storescu(port, [*sorted(archive_dir.iterdir()), tmp_path / "theirs.dcm"])
    answers = re.findall(r"Received Store Response \(Status: (0x\w+)", pushed.stderr + pushed.stdout)
    assert pushed.returncode == 0 and answers == ["0x0000"] * (len(received(archive_dir)) + 1), answers
    assert not list((Path(env["SCREEN_DATA_DIR"]) / "spool" / "incoming").glob(f"{chest_study}*"))  # none spooled


def test_a_film_sent_in_rle_is_accepted_and_screened(node, tmp_path):
    env, _, start = node
    port = free_port()
    (film,) = study_of(tmp_path / "rle", ["cr_chest_pa_monochrome1_jpeg_lossless.dcm"])
    dataset = pydicom.dcmread(film)
    dataset.compress(RLELossless, dataset.pixel_array)  # as older archives keep CR films
    dataset.save_as(film)
    start(port)
    sent = storescu(port, [film])  # proposes the film's own syntax only
    assert sent.returncode == 0 and "Status: 0x0000" in sent.stderr + sent.stdout, sent.stderr

    def screened() -> list[dict] | None:
        found = re.search(r"batch (\w+): 1 instance", (tmp_path / "listener-0.log").read_text())
        rows = json.loads(run_screen(env, "results", found.group(1), "--format", "json").stdout) if found else []
        return rows if rows and all(row["status"] != "queued" for row in rows) else None

    rows = wait_until(screened, 180, 1, "the study settled and screened")
    assert [(row["status"], 0 <= row["probability"] <= 1) for row in rows] == [("done", True)], rows


class RefusingArchive:
    """A real SCP that rejects every association (its allow-list names nobody we are)."""

    def __init__(self, port: int) -> None:
        ae = AE(ae_title="ARCHIVE")
        ae.require_calling_aet = ["NOBODY"]
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(("127.0.0.1", port), block=False)


def test_an_archive_that_refuses_everything_ends_in_failed_sends_not_a_loop(node, tmp_path):
    env, _, start = node
    refusing_port = free_port()
    archive = RefusingArchive(refusing_port)
    env = {
        **env,
        "SCREEN_RESULTS_DESTINATION": f"ARCHIVE@127.0.0.1:{refusing_port}",
        "SCREEN_SEND_MAX_ATTEMPTS": "3",
        "SCREEN_SEND_BACKOFF_SECONDS": "1",
        "SCREEN_STUDY_SETTLE_SECONDS": "2",
    }
    port = free_port()
    start(port, env)
    assert storescu(port, study_of(tmp_path / "chest", ["cr_chest_pa_monochrome2_jpeg_baseline.dcm"])).returncode == 0

    def failed_attempts() -> dict[str, str]:
        """Each failed send's id and attempts, read from the table's cells (its widths follow the longest UID)."""
        lines = run_screen(env, "outbox", "--failed").stdout.splitlines()
        cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if "rejected" in line]
        return {row[0]: row[4] for row in cells}

    first = wait_until(failed_attempts, 120, 1, "failed sends")
    # a second study through the same loop: by the time its sends have failed three times too, the loop has run
    # well past any back-off of the first's, and tried them no more
    assert storescu(port, study_of(tmp_path / "later", ["cr_chest_pa_monochrome2_jpeg_baseline.dcm"])).returncode == 0
    both = wait_until(lambda: len(failed_attempts()) > len(first) and failed_attempts(), 120, 1, "the second's sends")
    assert first.keys() <= both.keys() and set(both.values()) == {"3"}, both
    archive.server.shutdown()


def test_with_a_broker_the_workers_screen_and_send_what_the_listener_received_though_one_of_them_dies(
    node, redis_url, start_worker, tmp_path
):
    """One of two whole workers is killed while it screens an instance of the study (leases of 15 s; the default
    lease is test_faults' kill -9): the other takes its chunk over and the report still reaches the archive."""
    env, archive_dir, start = node
    env = {**env, "SCREEN_BROKER_URL": redis_url, "SCREEN_STUDY_SETTLE_SECONDS": "2", "SCREEN_CHUNK_SIZE": "1"}
    env |= {"SCREEN_WORK_HEARTBEAT": "5", "SCREEN_WORK_LEASE": "15"}
    database = f"sqlite:///{Path(env['SCREEN_DATA_DIR']) / 'screening.db'}"
    victim = start_worker(env, "victim")
    survivor = start_worker(env, "survivor")
    port = free_port()
    start(port, env)
    names = ["cr_chest_pa_monochrome1_jpeg_lossless.dcm", "cr_chest_pa_monochrome2_jpeg_baseline.dcm"]
    chest = study_of(tmp_path / "chest", names + names)
    assert storescu(port, chest).returncode == 0
    wait_until(lambda: held_by(database, "victim") > 0, 120, what="the victim screening an instance")
    victim.kill9()
    killed = time.monotonic()
    wait_until(lambda: any(d.Modality == "SR" for d in received(archive_dir)), 120, 1, "the report at the archive")
    print(f"the report at the archive {time.monotonic() - killed:.0f} s after the kill")  # the README's figure
    report = received_report(archive_dir)
    assert len(report.content.get_image_measurement_groups()) == 4  # the dead worker's instance included
    assert report.StudyInstanceUID == pydicom.dcmread(chest[0]).StudyInstanceUID
    assert any(holder and holder.startswith("victim@") for _, _, holder in screenings(database))
    assert "screening.send_result" in survivor.output()  # sent by the workers' task, not by the listener


def test_with_a_broker_a_report_that_could_not_be_made_is_made_again_by_the_workers_and_sent(
    node, redis_url, start_worker, tmp_path, monkeypatch
):
    """The screened film is away when its study's results are made: the workers' task tries again after the
    back-off, and once the film is back the report and the heatmap are made and reach the archive."""
    env, archive_dir, _ = node
    env = {**env, "SCREEN_BROKER_URL": redis_url, "SCREEN_SEND_BACKOFF_SECONDS": "1"}
    worker = start_worker(env)
    (film,) = study_of(tmp_path / "night", ["cr_chest_pa_monochrome2_jpeg_baseline.dcm"])
    run_screen(env, "enqueue", "--wait", str(film.parent), timeout=300)
    assert re.search(r"chunk of 1 image\(s\) in [\d.]+ s: [\d.]+ images/s; per image read \d+ ms", worker.output())
    for name, value in env.items():
        if name.startswith("SCREEN_"):
            monkeypatch.setenv(name, value)
    services = connect(load_settings())
    # the Celery app of a process started with this environment (this one may have made it with another)
    monkeypatch.setattr(celery_app, "app", celery_app.make_celery(services.settings))
    (batch,) = recent_batches(services)
    shutil.move(film, tmp_path / "away.dcm")
    (report,) = make_batch_results(services, batch.progress.batch_id)
    assert not report.made and report.attempts == 1 and "No such file" in str(report.last_error)
    dispatch_sends(services, [report])

    def attempts() -> int:
        (entry,) = [entry for entry in list_outbox(services) if entry.id == report.id]
        return entry.attempts

    wait_until(lambda: attempts() >= 2, 60, 0.2, "a second try by the workers")
    shutil.move(tmp_path / "away.dcm", film)
    wait_until(lambda: len(received(archive_dir)) == 2, 60, 0.5, "the report and the heatmap at the archive")
    assert {d.SOPClassUID for d in received(archive_dir)} == {ComprehensiveSRStorage, SecondaryCaptureImageStorage}
    assert {(entry.kind, entry.status) for entry in list_outbox(services)} == {("sr", "sent"), ("sc", "sent")}
    assert len(received_report(archive_dir).content.get_image_measurement_groups()) == 1
    services.engine.dispose()
