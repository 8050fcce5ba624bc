"""The GPU machines have JAX and no TensorFlow: the same commands must run there with KERAS_BACKEND=jax."""

import numpy as np
import pytest
from helpers import DICOM, assert_sample_folder_screened, run_screen

from screening.model.device import cpu_computes_bfloat16


def _logit(p: float) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def test_jax_without_tensorflow_and_bfloat16_screen_as_tensorflow_does_in_float32(
    screen_env, jax_env, sample_folder, tmp_path
):
    bfloat16_env = {**jax_env, "SCREEN_DTYPE_POLICY": "mixed_bfloat16", "SCREEN_DATA_DIR": str(tmp_path / "bf16")}
    # the option README's throughput table measures for CPUs with bfloat16 arithmetic (AVX512_BF16, AMX)
    tf_bfloat16_env = {**screen_env, "SCREEN_DTYPE_POLICY": "mixed_bfloat16", "SCREEN_DATA_DIR": str(tmp_path / "tf")}
    envs = (screen_env, jax_env, bfloat16_env, tf_bfloat16_env)
    outputs = [run_screen(env, "enqueue", "--wait", str(sample_folder)) for env in envs]
    assert "Keras backend tensorflow" in outputs[0].stderr and "Keras backend tensorflow" in outputs[3].stderr
    assert "Keras backend jax" in outputs[1].stderr and "Keras backend jax" in outputs[2].stderr
    assert "dtype policy mixed_bfloat16" in outputs[3].stderr
    expected = assert_sample_folder_screened(screen_env)
    jax_rows, bfloat16_rows, tf_bfloat16_rows = (assert_sample_folder_screened(env) for env in envs[1:])
    for name, row in expected.items():
        assert (jax_rows[name]["status"], jax_rows[name]["flagged"]) == (row["status"], row["flagged"]), name
        assert (tf_bfloat16_rows[name]["status"], tf_bfloat16_rows[name]["flagged"]) == (row["status"], row["flagged"])
        assert bfloat16_rows[name]["status"] == row["status"], name
        if row["probability"] is not None:
            assert jax_rows[name]["probability"] == pytest.approx(row["probability"], abs=1e-4), name
            # the tolerance of issue #22: what a faster path may move a probability by
            assert tf_bfloat16_rows[name]["probability"] == pytest.approx(row["probability"], abs=0.02), name
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


def test_bfloat16_is_this_cpus_own_arithmetic_only_with_avx512_bf16_or_amx(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (
        ("fpu avx2 avx512f avx512_vnni", False),
        ("fpu avx512f avx512_bf16 avx512_vnni", True),
        ("fpu amx_tile amx_bf16", True),
        ("fpu avx512_bf16x", False),
    ):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_computes_bfloat16(cpuinfo) is native, flags
    assert cpu_computes_bfloat16(tmp_path / "absent") is False
