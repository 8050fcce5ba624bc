"""The released model in the repository's models/ folder, registered on first use."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from screening.db.registry import NoActiveModel, active_version, promote, register_version
from screening.db.schema import ModelVersion
from screening.model.artifact import file_sha256, read_manifest

RELEASED_ARTIFACT = "pneumonia_resnet50.zip"


def register_artifact(
    session: Session, path: Path, activate: bool = False, parent_id: int | None = None
) -> ModelVersion:
    manifest = read_manifest(path)
    version = register_version(
        session,
        name=manifest["name"],
        artifact_path=str(path.resolve()),
        artifact_sha256=file_sha256(path),
        manifest=manifest,
        parent_id=parent_id,
    )
    if activate:
        promote(session, version.id)
    return version


def ensure_active_model(session: Session, models_dir: Path) -> ModelVersion:
    """The active version; on a fresh database, the released artifact is registered and activated."""
    try:
        return active_version(session)
    except NoActiveModel:
        released = models_dir / RELEASED_ARTIFACT
        if not released.exists():
            raise
        return register_artifact(session, released, activate=True)
