"""The GPU machines have JAX and no TensorFlow: the same commands must run there with KERAS_BACKEND=jax."""

import numpy as np
import pytest
from helpers import DICOM, assert_sample_folder_screened, run_screen


def _logit(p: float) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def test_jax_without_tensorflow_screens_as_tensorflow_does_in_float32_and_bfloat16(
    screen_env, jax_env, sample_folder, tmp_path
):
    bfloat16_env = {**jax_env, "SCREEN_DTYPE_POLICY": "mixed_bfloat16", "SCREEN_DATA_DIR": str(tmp_path / "bf16")}
    outputs = [run_screen(env, "enqueue", "--wait", str(sample_folder)) for env in (screen_env, jax_env, bfloat16_env)]
    assert "Keras backend tensorflow" in outputs[0].stderr
    assert "Keras backend jax" in outputs[1].stderr and "Keras backend jax" in outputs[2].stderr
    expected = assert_sample_folder_screened(screen_env)
    jax_rows, bfloat16_rows = assert_sample_folder_screened(jax_env), assert_sample_folder_screened(bfloat16_env)
    for name, row in expected.items():
        assert (jax_rows[name]["status"], jax_rows[name]["flagged"]) == (row["status"], row["flagged"]), name
        assert bfloat16_rows[name]["status"] == row["status"], name
        if row["probability"] is not None:
            assert jax_rows[name]["probability"] == pytest.approx(row["probability"], abs=1e-4), name
            # on the logit scale: a saturating bfloat16 output would turn a 0.99 into a 0.99999
            assert abs(_logit(bfloat16_rows[name]["probability"]) - _logit(row["probability"])) < 0.5, name


def test_explain_draws_the_same_heatmap_under_jax_as_under_tensorflow(screen_env, jax_env, tmp_path):
    import cv2

    film = DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
    outputs = {}
    for name, env in (("tensorflow", screen_env), ("jax", jax_env)):
        written = run_screen(env, "explain", str(film), "-o", str(tmp_path / f"{name}.png")).stdout
        outputs[name] = (
            float(written.split("P(pneumonia) ")[1].split()[0].rstrip(")")),
            cv2.imread(str(tmp_path / f"{name}.png")),
        )
    (p_tf, tf_image), (p_jax, jax_image) = outputs["tensorflow"], outputs["jax"]
    assert p_tf == pytest.approx(p_jax, abs=2e-3) and tf_image.shape == jax_image.shape
    assert np.abs(tf_image.astype(int) - jax_image.astype(int)).mean() < 2  # the same picture, up to rounding
    refused = run_screen(jax_env, "explain", str(film), "-o", str(tmp_path / "heat.gif"), check=False)
    assert refused.returncode == 2 and "must end in" in refused.stderr
