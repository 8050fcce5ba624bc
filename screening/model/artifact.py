"""The model artifact: one zip with manifest.json and weights.npz (float16 where it fits).

The manifest carries all a worker needs to serve the model the way it was trained:
architecture, preprocessing spec, threshold, metrics, training config and data manifest.
Its SHA-256 is recorded in the registry and checked before any worker loads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import keras
import numpy as np

from screening.model.network import Architecture, build_backbone, build_classifier, build_head

FORMAT = "screening-model/1"
FLOAT16_MAX = float(np.finfo(np.float16).max)


class ArtifactError(Exception):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _compact(array: np.ndarray) -> np.ndarray:
    # Halves the file; arrays float16 cannot hold (one BatchNorm variance reaches 83,615) stay float32.
    return array.astype(np.float16) if np.abs(array).max(initial=0) < FLOAT16_MAX else array


def as_stored(model: keras.Model) -> None:
    """Round the model's weights the way save_artifact stores them, so metrics match the file."""
    model.set_weights([_compact(w).astype(np.float32) for w in model.get_weights()])


def save_artifact(model: keras.Model, manifest: dict, path: Path) -> str:
    """Write the artifact and return its SHA-256."""
    weights = io.BytesIO()
    np.savez(weights, *[_compact(w) for w in model.get_weights()])
    full_manifest = {"format": FORMAT, **manifest, "weight_names": [v.path for v in model.weights]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps(full_manifest, indent=2, sort_keys=True))
        archive.writestr("weights.npz", weights.getvalue())
    return file_sha256(path)


def read_manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path.name} is not a {FORMAT} artifact")
    return manifest


def load_artifact(path: Path, expected_sha256: str | None = None) -> tuple[keras.Model, dict]:
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise ArtifactError(f"{path.name}: SHA-256 differs from the registry's; refusing to load it")
    manifest = read_manifest(path)
    architecture = Architecture(**manifest["architecture"])
    model = build_classifier(build_backbone(), build_head(architecture))
    if [v.path for v in model.weights] != manifest["weight_names"]:
        raise ArtifactError(f"{path.name}: weights do not match architecture {architecture}")
    with zipfile.ZipFile(path) as archive, np.load(io.BytesIO(archive.read("weights.npz"))) as stored:
        model.set_weights([stored[f"arr_{i}"].astype(np.float32) for i in range(len(stored.files))])
    return model, manifest
