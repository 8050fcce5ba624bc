"""Radiologists' labels and retraining: promoted only when not worse, rejected with the reason otherwise."""

import json
import re
import subprocess
import sys
from dataclasses import replace

import cv2
import pytest
import redis
from celery.schedules import crontab
from helpers import FULLRES, REPOSITORY, copy_training_set, run_screen, wait_until

from screening.config import load_settings
from screening.model.artifact import read_manifest
from screening.model.figures import BinaryMetrics
from screening.model.released import RELEASES
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, make_celery
from screening.training.retraining import promotion_decision
from screening.usecases.context import bootstrap
from screening.usecases.enqueue import enqueue_folders
from screening.usecases.label import record_labels
from screening.usecases.models import list_models, promote_model, show_model
from screening.usecases.retrain import retrain_active
from screening.usecases.train import SourceSpec, train_candidate

pytestmark = pytest.mark.xdist_group("feedback")  # one worker trains the module's candidate once


def figures(roc_auc, sensitivity):
    return BinaryMetrics(images=100, roc_auc=roc_auc, sensitivity=sensitivity)


ACTIVE = figures(0.95, 0.96)


def test_the_gate_promotes_only_what_is_not_worse():
    assert promotion_decision(ACTIVE, figures(0.95, 0.96)).promote
    assert promotion_decision(ACTIVE, figures(0.97, 0.97)).promote
    lower_auc = promotion_decision(ACTIVE, figures(0.94, 0.99))
    assert not lower_auc.promote and "roc_auc 0.9400 vs 0.9500" in lower_auc.reason
    assert not promotion_decision(ACTIVE, figures(0.99, 0.9)).promote
    assert promotion_decision(ACTIVE, figures(0.945, 0.96), tolerance=0.01).promote
    unmeasured = promotion_decision(ACTIVE, figures(None, 0.99))
    assert not unmeasured.promote and "roc_auc not measured vs 0.9500" in unmeasured.reason


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A candidate trained on 40 + 40 images with the official 16 as a check, by the use case itself."""
    root = tmp_path_factory.mktemp("feedback")
    settings = replace(
        load_settings(), data_dir=root / "data", database_url=f"sqlite:///{root / 'screening.db'}", broker_url=None
    )
    services = bootstrap(settings)
    training = copy_training_set(root / "train")
    source = SourceSpec("kermany", training)
    candidate = train_candidate(services, [source], out=root / "small.zip", check_dirs=(FULLRES / "val",))
    yield services, candidate, training
    services.engine.dispose()


def test_training_writes_the_artifact_its_card_and_its_report(trained):
    services, candidate, _ = trained
    report = candidate.artifact.with_name("small-report")
    for picture in ("curves.png", "roc_pr.png", "confusion.png", "mistakes.png"):
        assert cv2.imread(str(report / picture)) is not None, picture
    validation = candidate.manifest.metrics.validation
    assert f"| roc_auc | {validation.roc_auc:.4f} |" in (report / "report.md").read_text()
    assert validation.ece <= candidate.manifest.metrics.validation_ece_before_calibration + 1e-9
    assert candidate.manifest.metrics.checks["val"].images == 16  # the check folder, under its own name
    assert "| val (scored end to end) | 16 |" in (candidate.artifact.parent / "MODEL_CARD.md").read_text()
    assert len(candidate.manifest.data_manifest.files) == 80
    assert candidate.version is not None and candidate.version.status == "candidate"
    assert read_manifest(candidate.artifact).artifact_sha256 is None  # the file cannot hold its own hash
    assert candidate.manifest.artifact_sha256 == candidate.version.artifact_sha256


def test_labels_feed_a_retrained_child_that_is_promoted_only_when_not_worse(trained):
    services, candidate, training = trained
    parent = promote_model(services, candidate.version.id)
    enqueue_folders(services, [FULLRES / "val"])
    val = sorted((FULLRES / "val").iterdir())
    rows = [(str(path), "normal" if "NORMAL" in path.name else "pneumonia") for path in val[:7]]
    assert record_labels(services, rows, "reading.csv") == 7

    outcome = retrain_active(services, training)
    assert (outcome.parent_id, outcome.labels, outcome.name) == (parent.id, 7, "resnet50-pneumonia-retrained")
    child = show_model(services, outcome.version_id)
    assert child.notes.radiologist_labels == 7
    parent_shown = show_model(services, parent.id)
    assert child.data.validation_images == parent_shown.data.validation_images  # the parent's own validation split
    ours, theirs = child.metrics.validation, parent_shown.metrics.validation
    not_worse = ours.roc_auc >= theirs.roc_auc and ours.sensitivity >= theirs.sensitivity
    assert outcome.status == ("active" if not_worse else "rejected") and child.status_reason == outcome.reason

    strict = retrain_active(services, training, tolerance=-1)
    assert strict.status == "rejected" and strict.reason.startswith("worse than the active version")
    assert [v.status for v in list_models(services)].count("active") == 1


def test_the_nightly_schedule_follows_its_cron_line_and_routes_to_the_training_queue(monkeypatch):
    monkeypatch.setenv("SCREEN_RETRAIN_SCHEDULE", "30 3 * * 1")
    conf = make_celery(load_settings()).conf
    entry = conf.beat_schedule["nightly-retrain"]
    assert entry["task"] == NIGHTLY_RETRAIN_TASK
    assert entry["schedule"] == crontab(minute="30", hour="3", day_of_week="1")
    assert conf.task_routes[NIGHTLY_RETRAIN_TASK] == {"queue": "training"}


def test_the_nightly_task_retrains_on_a_training_worker(screen_env, redis_url, start_worker, tmp_path):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url}
    training = copy_training_set(tmp_path / "train")
    trained = run_screen(env, "train", str(training), "--out", str(tmp_path / "small.zip")).stdout
    candidate = re.search(r"registered as version (\d+) \(candidate\)", trained).group(1)
    run_screen(env, "models", "promote", candidate)
    trainer = start_worker(env, "trainer", queues="training")
    publish = "from screening.queue.celery_app import app, NIGHTLY_RETRAIN_TASK; app.send_task(NIGHTLY_RETRAIN_TASK)"
    subprocess.run([sys.executable, "-c", publish], env=env, cwd=REPOSITORY, check=True)
    assert redis.Redis.from_url(redis_url).llen("screening") == 0  # routed to `training`, not to the screeners
    wait_until(lambda: "succeeded" in trainer.output(), 180, 1, "nightly retrain")
    versions = json.loads(run_screen(env, "models", "list", "--json").stdout)
    child = max(versions, key=lambda version: version["id"])
    assert len(versions) == len(RELEASES) + 2 and child["status"] in ("active", "rejected")  # the candidate, its child
    assert json.loads(run_screen(env, "models", "show", str(child["id"])).stdout)["parent_id"] == int(candidate)
