"""Radiologists' labels and retraining: promoted only when not worse, rejected with the reason otherwise."""

import json
import shutil
import subprocess
import sys

import cv2
import pytest
import redis
from celery.schedules import crontab
from helpers import CXR224, FULLRES, REPOSITORY, run_screen, wait_until

from screening.config import load_settings
from screening.hashing import sha256_hex
from screening.queue.celery_app import NIGHTLY_RETRAIN_TASK, make_celery
from screening.training.retrain import promotion_decision

ACTIVE = {"roc_auc": 0.95, "sensitivity": 0.96}


def test_the_gate_promotes_only_what_is_not_worse():
    assert promotion_decision(ACTIVE, {"roc_auc": 0.95, "sensitivity": 0.96}).promote
    assert promotion_decision(ACTIVE, {"roc_auc": 0.97, "sensitivity": 0.97}).promote
    lower_auc = promotion_decision(ACTIVE, {"roc_auc": 0.94, "sensitivity": 0.99})
    assert not lower_auc.promote and "roc_auc 0.9400 vs 0.9500" in lower_auc.reason
    assert not promotion_decision(ACTIVE, {"roc_auc": 0.99, "sensitivity": 0.9}).promote
    assert promotion_decision(ACTIVE, {"roc_auc": 0.945, "sensitivity": 0.96}, tolerance=0.01).promote


@pytest.fixture
def small_training_set(tmp_path):
    """40 NORMAL and 40 PNEUMONIA training images: real data, small enough for the suite."""
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for source in sorted((CXR224 / name).iterdir())[:40]:
            shutil.copy(source, tmp_path / "train" / name / source.name)
    return tmp_path / "train"


def test_labels_feed_a_retrained_candidate_that_is_promoted_or_rejected_with_its_reason(
    screen_env, small_training_set, tmp_path
):
    run_screen(screen_env, "train", str(small_training_set), "--out", str(tmp_path / "small.zip"))
    run_screen(screen_env, "models", "promote", "2")
    report = tmp_path / "small-report"
    for picture in ("curves.png", "roc_pr.png", "confusion.png", "mistakes.png"):
        assert cv2.imread(str(report / picture)) is not None, picture
    trained = json.loads(run_screen(screen_env, "models", "show", "2").stdout)
    assert f"| roc_auc | {trained['metrics']['validation']['roc_auc']:.4f} |" in (report / "report.md").read_text()
    assert trained["metrics"]["validation"]["ece"] <= trained["metrics"]["validation_ece_before_calibration"] + 1e-9
    run_screen(screen_env, "enqueue", "--wait", str(FULLRES / "val"))

    val = sorted((FULLRES / "val").iterdir())
    sheet = tmp_path / "reading.csv"
    sheet.write_text(
        "image,truth\n" + "".join(f"{path},{'normal' if 'NORMAL' in path.name else 'pneumonia'}\n" for path in val[:6])
    )
    assert "6 label(s) recorded" in run_screen(screen_env, "label", "--csv", str(sheet)).stdout
    run_screen(screen_env, "label", sha256_hex(val[-1]), "--truth", "pneumonia")
    unknown = run_screen(screen_env, "label", "0" * 64, "--truth", "normal", check=False)
    assert unknown.returncode != 0 and "no screened image" in unknown.stderr

    outcome = run_screen(screen_env, "retrain", "--data", str(small_training_set)).stdout
    assert "version 3 (resnet50-pneumonia-retrained, parent 2, 7 labels)" in outcome
    shown = json.loads(run_screen(screen_env, "models", "show", "3").stdout)
    assert shown["parent_id"] == 2 and shown["training_config"]["radiologist_labels"] == 7
    candidate, active = (
        shown["metrics"]["validation"],
        json.loads(run_screen(screen_env, "models", "show", "2").stdout)["metrics"]["validation"],
    )
    assert (
        shown["data_manifest"]["validation_images"]
        == json.loads(run_screen(screen_env, "models", "show", "2").stdout)["data_manifest"]["validation_images"]
    )
    not_worse = candidate["roc_auc"] >= active["roc_auc"] and candidate["sensitivity"] >= active["sensitivity"]
    assert shown["status"] == ("active" if not_worse else "rejected") and shown["status_reason"]

    strict = run_screen(screen_env, "retrain", "--data", str(small_training_set), "--tolerance", "-1").stdout
    assert "rejected: worse than the active version on the same validation split" in strict
    versions = {v["id"]: v["status"] for v in json.loads(run_screen(screen_env, "models", "list", "--json").stdout)}
    assert versions[4] == "rejected" and list(versions.values()).count("active") == 1


def test_the_nightly_schedule_follows_its_cron_line_and_routes_to_the_training_queue(monkeypatch):
    monkeypatch.setenv("SCREEN_RETRAIN_SCHEDULE", "30 3 * * 1")
    conf = make_celery(load_settings()).conf
    entry = conf.beat_schedule["nightly-retrain"]
    assert entry["task"] == NIGHTLY_RETRAIN_TASK
    assert entry["schedule"] == crontab(minute="30", hour="3", day_of_week="1")
    assert conf.task_routes[NIGHTLY_RETRAIN_TASK] == {"queue": "training"}


def test_the_nightly_task_retrains_on_a_training_worker(
    screen_env, redis_url, small_training_set, start_worker, tmp_path
):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url}
    run_screen(env, "train", str(small_training_set), "--out", str(tmp_path / "small.zip"))
    run_screen(env, "models", "promote", "2")
    trainer = start_worker(env, "trainer", queues="training")
    publish = "from screening.queue.celery_app import app, NIGHTLY_RETRAIN_TASK; app.send_task(NIGHTLY_RETRAIN_TASK)"
    subprocess.run([sys.executable, "-c", publish], env=env, cwd=REPOSITORY, check=True)
    assert redis.Redis.from_url(redis_url).llen("screening") == 0  # routed to `training`, not to the screeners
    wait_until(lambda: "succeeded" in trainer.output(), 180, 1, "nightly retrain")
    versions = json.loads(run_screen(env, "models", "list", "--json").stdout)
    assert len(versions) == 3 and versions[2]["status"] in ("active", "rejected")
    assert json.loads(run_screen(env, "models", "show", "3").stdout)["parent_id"] == 2
