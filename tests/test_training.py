"""`screen train` in two phases on small real data: what is fine-tuned, what stays ImageNet's."""

import json

import numpy as np
import pytest
from helpers import copy_training_set, run_screen

from screening.config import load_settings
from screening.model.artifact import read_artifact
from screening.model.network import compact
from screening.model.weights import CACHE_NAME, load_imagenet_weights


@pytest.fixture
def small_training_set(tmp_path):
    return copy_training_set(tmp_path / "train", start=40)


@pytest.mark.e2e  # `screen train` processes, with the environment fixture of each backend
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_fine_tuning_changes_the_last_stage_only(backend, request, small_training_set, tmp_path):
    """Also with JAX and no TensorFlow at all, as on the GPU machines."""
    env = request.getfixturevalue("screen_env" if backend == "tensorflow" else "jax_env")
    artifact, config = tmp_path / "tuned.zip", tmp_path / "config.json"
    config.write_text(json.dumps({"epochs": 6, "learning_rate": 3e-3}))
    trained = run_screen(
        env, "train", str(small_training_set), "--out", str(artifact), "--config", str(config),
        "--fine-tune-epochs", "1", "--no-register",
    )  # fmt: skip
    assert "fine-tuning epoch 1: loss" in trained.stderr and "head epoch 6: loss" in trained.stderr
    manifest, arrays = read_artifact(artifact)
    assert (manifest.training_config["epochs"], manifest.training_config["fine_tune_epochs"]) == (6, 1)
    assert manifest.training_config["phase"] == "head on frozen features, then fine-tuned from conv5_block1_1_conv"
    weights = dict(zip(manifest.weight_names, arrays, strict=True))
    imagenet = load_imagenet_weights(load_settings().weights_dir / CACHE_NAME)

    def as_imagenet(name):
        return compact(imagenet[name]).astype(np.float32)

    assert not np.allclose(weights["conv5_block3_3_conv/kernel"], as_imagenet("conv5_block3_3_conv/kernel"))
    np.testing.assert_array_equal(weights["conv4_block6_3_conv/kernel"], as_imagenet("conv4_block6_3_conv/kernel"))
    np.testing.assert_array_equal(
        weights["conv5_block3_3_bn/moving_mean"], as_imagenet("conv5_block3_3_bn/moving_mean")
    )
    report = (tmp_path / "tuned-report" / "report.md").read_text()
    assert f"{manifest.metrics['epochs']} epochs" in report and "fine-tuned" in report
    assert "fine-tuned from conv5_block1_1_conv" in (tmp_path / "MODEL_CARD.md").read_text()


def test_an_unknown_training_setting_is_refused(screen_env, small_training_set, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"epoch": 5}))
    refused = run_screen(screen_env, "train", str(small_training_set), "--config", str(config), check=False)
    assert refused.returncode == 2 and "unknown training settings: epoch" in refused.stderr
