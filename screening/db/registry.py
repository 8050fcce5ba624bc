"""The model registry: which versions exist, how they scored, and which one is active."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from screening.db.schema import ModelVersion, utcnow


class NoActiveModel(Exception):
    pass


def register_version(
    session: Session,
    *,
    name: str,
    artifact_path: str,
    artifact_sha256: str,
    manifest: dict,
    parent_id: int | None = None,
) -> ModelVersion:
    """Add a candidate version, or return the one already registered with this artifact."""
    existing = session.scalar(select(ModelVersion).where(ModelVersion.artifact_sha256 == artifact_sha256))
    if existing is not None:
        return existing
    version = ModelVersion(
        name=name,
        artifact_path=artifact_path,
        artifact_sha256=artifact_sha256,
        parent_id=parent_id,
        preprocessing=manifest["preprocessing"],
        training_config=manifest.get("training_config", {}),
        data_manifest=manifest.get("data_manifest", {}),
        metrics=manifest.get("metrics", {}),
        threshold=float(manifest["threshold"]),
        status="candidate",
    )
    session.add(version)
    session.flush()
    return version


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make one version active; the previously active one is retired."""
    session.execute(update(ModelVersion).where(ModelVersion.status == "active").values(status="retired"))
    version = session.get_one(ModelVersion, version_id)
    version.status = "active"
    version.promoted_at = utcnow()
    session.flush()
    return version


def active_version(session: Session) -> ModelVersion:
    version = session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))
    if version is None:
        raise NoActiveModel("no active model version: register one with `screen models register`")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
