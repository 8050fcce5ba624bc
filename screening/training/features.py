"""Backbone features for the head's phase, computed once per image and cached by content hash."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from screening.config import ImageLimits
from screening.imaging.pipeline import prepare_file
from screening.model.infer import predict_in_batches
from screening.model.preprocessing import PreprocessSpec


def model_inputs(
    files: list[tuple[Path, str]], spec: PreprocessSpec, limits: ImageLimits, pool: ThreadPoolExecutor
) -> np.ndarray:
    """The images the worker would feed the model for these (path, SHA-256) files (the shared pipeline), decoded in
    parallel; a file whose content is no longer that hash is refused, not learnt from under another's label."""
    return np.stack(list(pool.map(lambda file: prepare_file(file[0], spec, limits, file[1]).image, files)))


def backbone_features(
    extractor: keras.Model,
    paths: list[Path],
    sha256s: list[str],
    spec: PreprocessSpec,
    limits: ImageLimits,
    cache_file: Path,
    batch_size: int = 64,
    on_images: Callable[[int], None] | None = None,
) -> np.ndarray:
    """`extractor` (0-255 images in, features out) over the files, reusing features cached under their content
    hashes."""
    cached: dict[str, np.ndarray] = {}
    if cache_file.exists():
        with np.load(cache_file) as stored:
            cached = dict(zip(stored["keys"], stored["features"], strict=True))
    missing = [(path, sha) for path, sha in zip(paths, sha256s, strict=True) if sha not in cached]
    with ThreadPoolExecutor() as pool:
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            images = model_inputs(chunk, spec, limits, pool)
            features = predict_in_batches(extractor, images, batch_size)
            cached.update({sha: feature for (_, sha), feature in zip(chunk, features, strict=True)})
            if on_images:
                on_images(len(chunk))
    if missing:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, keys=np.array(list(cached)), features=np.stack(list(cached.values())))
    return np.stack([cached[sha] for sha in sha256s])
