"""Registering artifacts: the released model in models/ on first use, and any artifact by hand or by training.

Registration copies the artifact into the registry's own store, named by its SHA-256 and made read-only,
so nothing written later where it came from (a training run, a careless copy) can change a registered
model: the registry always points at the bytes it verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from screening.db.registry import NoActiveModel, active_version, list_versions, promote, register_version
from screening.db.schema import ModelVersion
from screening.hashing import sha256_hex
from screening.model.artifact import ArtifactError, policy_of, read_manifest

# The models shipped in models/, oldest first: the last is the current release.
RELEASES = (
    "pneumonia_resnet50.zip",
    "pneumonia_resnet50_v2.zip",
    "pneumonia_resnet50_v3.zip",
    "pneumonia_resnet50_v4.zip",
    "pneumonia_resnet50_v5.zip",
)
RELEASED_ARTIFACT = RELEASES[-1]


def store_artifact(path: Path, registry_dir: Path) -> tuple[Path, str]:
    """Copy `path` into the content-addressed store (once); return the stored copy and its SHA-256."""
    sha256 = sha256_hex(path)
    stored = registry_dir / f"{sha256}.zip"
    if not stored.exists() or sha256_hex(stored) != sha256:
        registry_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=registry_dir, suffix=".partial")
        os.close(handle)
        partial = Path(name)
        shutil.copyfile(path, partial)
        if sha256_hex(partial) != sha256:
            partial.unlink()
            raise ArtifactError(f"{path.name} changed while it was being registered; try again")
        partial.chmod(0o444)
        partial.replace(stored)
    return stored, sha256


def register_artifact(
    session: Session,
    path: Path,
    registry_dir: Path,
    activate: bool = False,
    parent_id: int | None = None,
    reference_check: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelVersion:
    """Store and register an artifact whose operating points are usable; optionally activate it. `reference_check`:
    what it scored on the reference films (the use case that registers by hand measures it first); `name`: the
    registry's name for it (a release's is its file's, so that releases sharing a manifest name stay apart),
    else its manifest's."""
    manifest = read_manifest(path)
    policy_of(manifest)  # operating points that are not probabilities and positive temperatures are refused
    stored, sha256 = store_artifact(path, registry_dir)
    described = manifest.to_dict() | ({"name": name} if name else {})
    version = register_version(session, described, str(stored.resolve()), sha256, parent_id, reference_check)
    if activate:
        promote(session, version.id)
    return version


def registered_file(session: Session, path: Path) -> ModelVersion | None:
    """The version whose artifact is `path` (by location or by content), if any: such a file is never overwritten."""
    if not path.exists():
        return None
    by_path = session.scalar(select(ModelVersion).where(ModelVersion.artifact_path == str(path.resolve())))
    if by_path is not None:
        return by_path
    try:
        sha256 = sha256_hex(path)
    except OSError:
        return None
    return session.scalar(select(ModelVersion).where(ModelVersion.artifact_sha256 == sha256))


def ensure_active_model(session: Session, models_dir: Path, registry_dir: Path) -> ModelVersion:
    """The active version. On a fresh database the releases in models/ are registered and activated oldest first,
    so the newest is active and `screen models rollback` returns to the one before it. A database that has an
    active version keeps it: moving an installation to a new release is the site's call (`screen models register`
    and `promote`). A registry with versions and none active is not set right behind the site's back."""
    try:
        return active_version(session)
    except NoActiveModel:
        registered = len(list_versions(session))
        if registered:
            raise NoActiveModel(
                f"no model version is active, of the {registered} registered: `screen models list`, then "
                "`screen models promote ID`"
            ) from None
        released = [models_dir / name for name in RELEASES if (models_dir / name).exists()]
        if not released:
            raise
        for artifact in released:  # processes starting together may each do this: the newest ends active
            version = register_artifact(session, artifact, registry_dir, activate=True, name=artifact.stem)
        return version
