"""`screen evaluate` and its metrics: the released model's card numbers come back, with intervals."""

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
from helpers import FULLRES, REPOSITORY, active_version, run_screen

from screening.model.artifact import read_manifest
from screening.model.released import RELEASED_ARTIFACT
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.metrics import bootstrap_intervals, expected_calibration_error


def test_evaluate_reproduces_the_model_cards_official_validation_numbers(screen_env):
    card = asdict(read_manifest(REPOSITORY / "models" / RELEASED_ARTIFACT).metrics.checks["val"])  # through the gate
    version = str(active_version(screen_env)["id"])
    measured = json.loads(
        run_screen(
            screen_env, "evaluate", version, str(FULLRES / "val"), "--format", "json", "--bootstrap", "200"
        ).stdout
    )
    for name in ("images", "gate_refused", "roc_auc", "accuracy", "sensitivity", "specificity", "confusion"):
        assert measured[name] == pytest.approx(card[name], abs=1e-6), name
    for name, (low, high) in measured["ci95"].items():
        assert low <= measured[name] + 1e-9 and measured[name] <= high + 1e-9, name
    table = run_screen(screen_env, "evaluate", version, str(FULLRES / "val"), "--bootstrap", "50").stdout
    assert "sensitivity" in table and "95% CI" in table


def test_labels_come_from_class_folders_or_exact_kermany_names_never_guesses(tmp_path):
    folders = labelled_folder(FULLRES / "train")
    assert len(folders) == 400 and sum(label for _, label in folders) == 280
    official = labelled_folder(FULLRES / "val")  # shipped flat, every file named the Kermany way
    assert len(official) == 16 and sum(label for _, label in official) == 8
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(sorted((FULLRES / "train" / "NORMAL").iterdir())[0], flat / "abnormal_pneumonia_case1.jpeg")
    with pytest.raises(LabelledDataError, match="needs a NORMAL and a PNEUMONIA folder"):
        labelled_folder(flat)


def test_evaluate_refuses_one_class_empty_or_flat_folders_and_leaves_out_bad_images(screen_env, tmp_path):
    one_class, empty = tmp_path / "one", tmp_path / "empty"
    shutil.copytree(FULLRES / "train" / "NORMAL", one_class / "NORMAL")
    (one_class / "PNEUMONIA").mkdir()
    (empty / "NORMAL").mkdir(parents=True)
    (empty / "PNEUMONIA").mkdir()
    version = str(active_version(screen_env)["id"])
    for folder in (one_class, empty, tmp_path):
        refused = run_screen(screen_env, "evaluate", version, str(folder), check=False, timeout=60)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "of each class" in refused.stderr or "needs a NORMAL and a PNEUMONIA folder" in refused.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(FULLRES / "val", mixed)
    (mixed / "IM-9999-0001.jpeg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    scored = run_screen(screen_env, "evaluate", version, str(mixed), "--bootstrap", "20", "--format", "json")
    report = json.loads(scored.stdout)
    assert report["images"] == 16 and [e["file"] for e in report["excluded"]] == ["IM-9999-0001.jpeg"]


def test_calibration_error_is_small_for_calibrated_scores_and_large_for_overconfident_ones():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 20_000)
    calibrated = (rng.uniform(0, 1, scores.size) < scores).astype(int)
    assert expected_calibration_error(calibrated, scores) < 0.02
    assert expected_calibration_error(calibrated, np.round(scores)) > 0.2


def test_bootstrap_intervals_narrow_with_more_images():
    rng = np.random.default_rng(1)

    def width(n):
        labels = rng.integers(0, 2, n)
        scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
        low, high = bootstrap_intervals(labels, scores, 0.5, rounds=200)["accuracy"]
        return high - low

    assert width(2000) < width(100) / 2


def test_temperature_scaling_makes_overconfident_probabilities_honest():
    from scipy.special import expit

    from screening.model.calibration import fit_temperature, probabilities

    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, 5000)
    labels = (rng.uniform(0, 1, true_logits.size) < expit(true_logits)).astype(int)
    network_logits = 3 * true_logits  # right ranking, probabilities too extreme
    overconfident = probabilities(network_logits, 1.0)
    temperature = fit_temperature(labels, network_logits)
    assert temperature == pytest.approx(3, rel=0.15)
    calibrated = probabilities(network_logits, temperature)
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(labels, overconfident) / 3
    order = np.argsort(overconfident, kind="stable")
    assert np.all(np.diff(calibrated[order]) >= 0)  # monotone: the ranking, and so ROC AUC, is untouched
