"""`screen train` in two phases on small real data: what is fine-tuned, what stays ImageNet's."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest
from helpers import DATA, REPOSITORY, SCREEN, copy_adult_films, copy_training_set, run_screen

from screening.config import load_settings
from screening.model.artifact import read_age_estimate, read_artifact
from screening.model.network import compact
from screening.model.weights import CACHE_NAME, load_imagenet_weights


@pytest.fixture
def small_training_set(tmp_path):
    return copy_training_set(tmp_path / "train", start=40)


@pytest.mark.e2e  # `screen train` processes, with the environment fixture of each backend
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_fine_tuning_changes_the_last_stage_only(backend, request, small_training_set, tmp_path):
    """Also with JAX and no TensorFlow at all, as on the GPU machines. The last stage changes when fine-tuning beat
    the head alone (and is kept), and is ImageNet's otherwise; nothing before it changes in either case."""
    env = request.getfixturevalue("screen_env" if backend == "tensorflow" else "jax_env")
    artifact, config = tmp_path / "tuned.zip", tmp_path / "config.json"
    config.write_text(json.dumps({"epochs": 6, "learning_rate": 3e-3}))
    trained = run_screen(
        env, "train", str(small_training_set), "--out", str(artifact), "--config", str(config),
        "--fine-tune-epochs", "1", "--no-register",
    )  # fmt: skip
    assert "fine-tuning epoch 1/1: loss" in trained.stderr and "head epoch 6/6: loss" in trained.stderr
    manifest, arrays = read_artifact(artifact)
    assert (manifest.training_config.epochs, manifest.training_config.fine_tune_epochs) == (6, 1)
    assert manifest.notes.phase == "head on frozen features, then fine-tuned from conv5_block1_1_conv"
    weights = dict(zip(manifest.weight_names, arrays, strict=True))
    imagenet = load_imagenet_weights(load_settings().weights_dir / CACHE_NAME)

    def as_imagenet(name):
        return compact(imagenet[name]).astype(np.float32)

    changed = not np.allclose(weights["conv5_block3_3_conv/kernel"], as_imagenet("conv5_block3_3_conv/kernel"))
    assert changed == manifest.metrics.fine_tuning_kept
    np.testing.assert_array_equal(weights["conv4_block6_3_conv/kernel"], as_imagenet("conv4_block6_3_conv/kernel"))
    np.testing.assert_array_equal(
        weights["conv5_block3_3_bn/moving_mean"], as_imagenet("conv5_block3_3_bn/moving_mean")
    )
    report = (tmp_path / "tuned-report" / "report.md").read_text()
    assert f"{manifest.metrics.epochs} epochs" in report and "fine-tuned" in report
    assert "fine-tuned from conv5_block1_1_conv" in (tmp_path / "MODEL_CARD.md").read_text()


def test_an_unknown_training_setting_is_refused(screen_env, small_training_set, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"epoch": 5}))
    refused = run_screen(screen_env, "train", str(small_training_set), "--config", str(config), check=False)
    assert refused.returncode == 2 and "unknown training settings: epoch" in refused.stderr


@pytest.mark.e2e  # `screen train` processes, one of them killed
def test_a_multi_source_run_killed_mid_fine_tuning_resumes_from_its_checkpoint(screen_env, tmp_path):
    kermany, adult = copy_training_set(tmp_path / "kermany", per_class=20), copy_adult_films(tmp_path / "adult", 12, 6)
    config = tmp_path / "config.json"
    populations = {"kermany": "child", "adult": "adult"}
    config.write_text(
        json.dumps({"epochs": 4, "fine_tune_batch_size": 8, "fine_tune_patience": 5, "populations": populations})
    )
    arguments = [
        "train", "--source", f"kermany={kermany}", "--source", f"adult={adult / 'train'},{adult / 'val'}",
        "--out", str(tmp_path / "multi.zip"), "--config", str(config), "--fine-tune-epochs", "3", "--no-register",
        "--out-of-scope", str(DATA / "out-of-scope"),
    ]  # fmt: skip
    first = subprocess.Popen(
        SCREEN + arguments, env=screen_env, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY, start_new_session=True
    )
    head_epochs = 0
    for line in first.stderr:
        head_epochs += line.startswith("head epoch")
        if line.startswith("fine-tuning epoch 1/3"):
            os.killpg(first.pid, signal.SIGKILL)  # mid-run: one fine-tuning epoch done, two to go
            break
    first.wait()
    refused = run_screen(screen_env, *arguments, check=False)
    assert refused.returncode == 1 and "--resume continues it" in refused.stderr
    head = tmp_path / "multi-checkpoints" / "head.weights.h5"
    kept = head.read_bytes()
    middle = len(kept) // 2
    head.write_bytes(kept[:middle] + bytes(b ^ 0xFF for b in kept[middle : middle + 64]) + kept[middle + 64 :])
    tampered = run_screen(screen_env, *arguments, "--resume", check=False)
    assert tampered.returncode == 1 and "head.weights.h5 is not the checkpoint this run wrote" in tampered.stderr
    head.write_bytes(kept)

    resumed = run_screen(screen_env, *arguments, "--resume").stderr
    assert "head: taken from the checkpoint" in resumed and "resuming after epoch 1" in resumed
    assert "fine-tuning epoch 1/3" not in resumed and "fine-tuning epoch 3/3" in resumed and "ETA" in resumed
    manifest, _ = read_artifact(tmp_path / "multi.zip")
    by_source = manifest.metrics.validation_by_source
    assert "kermany" in by_source and {name for name in by_source if name.startswith("adult/")}
    adult_parts = sum(found.images for name, found in by_source.items() if name.startswith("adult/"))
    assert by_source["adult"].images == adult_parts  # the source as a whole, and each of its sub-sources
    assert by_source["kermany"].images + adult_parts == manifest.metrics.validation.images
    sources = manifest.data_manifest.sources
    assert sources["kermany"].train > 0 and all(row.source for row in manifest.data_manifest.files)
    assert "head epoch" not in resumed and 1 <= head_epochs <= 4  # the head was not trained again
    assert manifest.metrics.epochs == head_epochs + 3  # every epoch of both runs, each once
    assert not (tmp_path / "multi-checkpoints").exists()  # finished: nothing left to resume
    assert "validation, kermany" in (tmp_path / "MODEL_CARD.md").read_text()
    assert by_source["adult"].ci95["roc_auc"][0] <= by_source["adult"].roc_auc <= by_source["adult"].ci95["roc_auc"][1]
    assert manifest.gate is not None and "gate: refuses" in resumed  # fitted on the final, fine-tuned network
    assert {"kermany", "varied"} <= set(manifest.gate.test.frontal_refusal_rate)
    assert set(manifest.metrics.baseline.validation_by_source) == set(by_source)
    # an operating point per population, each on its own validation films, and the age-group estimate
    assert "operating point, child: threshold" in resumed and "operating point, adult: threshold" in resumed
    assert set(manifest.populations.points) == {"child", "adult"}
    assert read_age_estimate(tmp_path / "multi.zip", manifest) is not None
    assert manifest.metrics.populations["adult"].images == by_source["adult"].images


@pytest.mark.e2e  # a `screen train` process
def test_fine_tuning_that_only_makes_things_worse_leaves_the_head_only_network(
    screen_env, small_training_set, tmp_path
):
    """The network before fine-tuning is the one to beat: a learning rate that wrecks the backbone is not kept."""
    artifact, config = tmp_path / "wrecked.zip", tmp_path / "config.json"
    config.write_text(
        json.dumps({"epochs": 6, "fine_tune_learning_rate": 50.0, "fine_tune_from": "conv5_block3_1_conv"})
    )
    trained = run_screen(
        screen_env, "train", str(small_training_set), "--out", str(artifact), "--config", str(config),
        "--fine-tune-epochs", "1", "--no-register",
    )  # fmt: skip
    assert "fine-tuning epoch 1/1" in trained.stderr
    manifest, arrays = read_artifact(artifact)
    weights = dict(zip(manifest.weight_names, arrays, strict=True))
    imagenet = load_imagenet_weights(load_settings().weights_dir / CACHE_NAME)
    kernel = "conv5_block3_3_conv/kernel"
    np.testing.assert_array_equal(weights[kernel], compact(imagenet[kernel]).astype(np.float32))
    assert manifest.metrics.validation.roc_auc > 0.8  # the head's, not the wrecked network's
