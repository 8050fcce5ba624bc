"""The GPU machines have JAX and no TensorFlow: the same commands must run there with KERAS_BACKEND=jax."""

import pytest
from conftest import run_screen
from helpers import assert_sample_folder_screened


def test_jax_without_tensorflow_screens_as_tensorflow_does(screen_env, jax_env, sample_folder):
    with_tensorflow = run_screen(screen_env, "enqueue", "--wait", str(sample_folder))
    with_jax = run_screen(jax_env, "enqueue", "--wait", str(sample_folder))
    assert "Keras backend tensorflow" in with_tensorflow.stderr and "Keras backend jax" in with_jax.stderr
    expected, rows = assert_sample_folder_screened(screen_env), assert_sample_folder_screened(jax_env)
    for name, row in expected.items():
        assert (rows[name]["status"], rows[name]["flagged"]) == (row["status"], row["flagged"]), name
        if row["probability"] is not None:
            assert rows[name]["probability"] == pytest.approx(row["probability"], abs=1e-4), name
