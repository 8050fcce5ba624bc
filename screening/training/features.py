"""Backbone features for the frozen phase, computed once per image and cached by content hash."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from screening.imaging.preprocess import PreprocessSpec, preprocess
from screening.imaging.read import decode_radiograph
from screening.model.network import imagenet_input

MAX_PIXELS = 60_000_000


def model_input(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Exactly what the worker feeds the model for this file."""
    return preprocess(decode_radiograph(path.read_bytes(), MAX_PIXELS).pixels, spec)


def backbone_features(
    backbone: keras.Model,
    paths: list[Path],
    keys: list[str],
    spec: PreprocessSpec,
    cache_file: Path,
    batch_size: int = 64,
    progress=None,  # noqa: ANN001
) -> np.ndarray:
    cached: dict[str, np.ndarray] = {}
    if cache_file.exists():
        with np.load(cache_file) as stored:
            cached = dict(zip(stored["keys"], stored["features"], strict=True))
    missing = [(p, k) for p, k in zip(paths, keys, strict=True) if k not in cached]
    with ThreadPoolExecutor() as pool:
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            images = np.stack(list(pool.map(lambda item: model_input(item[0], spec), chunk)))
            features = backbone.predict_on_batch(imagenet_input(images))
            cached.update({key: feature for (_, key), feature in zip(chunk, features, strict=True)})
            if progress:
                progress(len(chunk))
    if missing:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, keys=np.array(list(cached)), features=np.stack(list(cached.values())))
    return np.stack([cached[key] for key in keys])
