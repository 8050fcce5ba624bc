"""The model artifact file: one zip with manifest.json, weights.npz (float16 where it fits) and, for a version
with an applicability gate, gate.npz, and with an age-group estimate, age_group.npz.

The manifest carries all a worker needs to serve the model the way it was trained:
architecture, preprocessing spec, threshold, metrics, training config and data manifest.
Its SHA-256 is recorded in the registry and checked before any worker loads it. This module
knows the file format only (no Keras), so the CLI can read manifests without loading a backend.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.model.gate import ApplicabilityGate
from screening.model.manifest import FORMAT, ModelManifest
from screening.model.population import AgeGroupEstimate, PopulationPolicy

FLOAT16_MAX = float(np.finfo(np.float16).max)
REQUIRED_KEYS = ("name", "architecture", "preprocessing", "threshold", "weight_names")


class ArtifactError(ScreeningError):
    pass


def compact(array: np.ndarray) -> np.ndarray:
    """Float16 halves the file; arrays it cannot hold (a BatchNorm variance reaches 83,615) stay float32."""
    return array.astype(np.float16) if np.abs(array).max(initial=0) < FLOAT16_MAX else array


def write_artifact(
    path: Path,
    manifest: ModelManifest,
    arrays: list[np.ndarray],
    gate: ApplicabilityGate | None = None,
    estimate: AgeGroupEstimate | None = None,
) -> str:
    """Write the artifact and return its SHA-256."""
    weights = io.BytesIO()
    np.savez(weights, *[compact(a) for a in arrays])
    full_manifest = {key: value for key, value in manifest.to_dict().items() if key != "artifact_sha256"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps(full_manifest, indent=2, sort_keys=True))
        archive.writestr("weights.npz", weights.getvalue())
        for name, probe in (("gate.npz", gate), ("age_group.npz", estimate)):
            if probe is not None:
                stored = io.BytesIO()
                named = probe.arrays()
                np.savez(stored, mean=named["mean"], scale=named["scale"], weights=named["weights"], bias=named["bias"])
                archive.writestr(name, stored.getvalue())
    return sha256_hex(path)


def read_manifest(path: Path) -> ModelManifest:
    """The manifest, checked for the fields every reader relies on; ArtifactError says what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, OSError):
        raise ArtifactError(f"{path.name} is not a model artifact (not a readable zip file)") from None
    except KeyError:
        raise ArtifactError(f"{path.name} is not a model artifact (no manifest.json inside)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{path.name}: manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path.name} is not a {FORMAT} artifact")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"{path.name}: manifest.json lacks {', '.join(missing)}")
    try:
        float(manifest["threshold"])
    except (TypeError, ValueError):
        raise ArtifactError(f"{path.name}: the threshold in manifest.json is not a number") from None
    try:
        return ModelManifest.from_dict(manifest)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ArtifactError(f"{path.name}: manifest.json does not fit at {where} ({first['msg']})") from None


def verify_artifact_file(path: Path, expected_sha256: str) -> None:
    """Refuse a registered artifact that is gone, or whose bytes are not the ones the registry recorded."""
    if not path.is_file():
        raise ArtifactError(f"{path.name}: no artifact at its registered path")
    if sha256_hex(path) != expected_sha256:
        raise ArtifactError(f"{path.name}: SHA-256 differs from the one registered; refusing to load it")


def read_artifact(path: Path, expected_sha256: str | None = None) -> tuple[ModelManifest, list[np.ndarray]]:
    """The manifest and the weights as float32, after checking the file is the one registered."""
    if expected_sha256 is not None:
        verify_artifact_file(path, expected_sha256)
    manifest = read_manifest(path)
    try:
        with zipfile.ZipFile(path) as archive, np.load(io.BytesIO(archive.read("weights.npz"))) as stored:
            arrays = [stored[f"arr_{i}"].astype(np.float32) for i in range(len(stored.files))]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        raise ArtifactError(f"{path.name}: weights.npz is missing or unreadable") from None
    return manifest, arrays


def _probe_arrays(path: Path, name: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive, np.load(io.BytesIO(archive.read(name))) as stored:
        return {key: stored[key] for key in stored.files}


def read_gate(path: Path, manifest: ModelManifest) -> ApplicabilityGate | None:
    """The version's applicability gate, or None when it was released without one."""
    if manifest.gate is None:
        return None
    try:
        return ApplicabilityGate.from_stored(manifest.gate, _probe_arrays(path, "gate.npz"))
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile):
        raise ArtifactError(f"{path.name}: the applicability gate (gate.npz) is missing or unreadable") from None


def read_age_estimate(path: Path, manifest: ModelManifest) -> AgeGroupEstimate | None:
    """The version's age-group estimate, or None for a version with one operating point (or none fitted)."""
    if manifest.populations is None:
        return None
    try:
        return AgeGroupEstimate.from_stored(manifest.populations.estimate, _probe_arrays(path, "age_group.npz"))
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile):
        raise ArtifactError(f"{path.name}: the age-group estimate (age_group.npz) is missing or unreadable") from None


def policy_of(manifest: ModelManifest, estimate: AgeGroupEstimate | None = None) -> PopulationPolicy:
    """The version's operating points; ArtifactError when its manifest describes them wrongly."""
    try:
        return PopulationPolicy.from_manifest(manifest.threshold, manifest.temperature, manifest.populations, estimate)
    except (KeyError, TypeError, ValueError) as problem:
        raise ArtifactError(f"{manifest.name}: its operating points are unusable ({problem})") from None
