"""The model registry: which versions exist, how they scored, and which one is active."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
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
    """Add a candidate version, or return the one already registered with this artifact.

    Safe when several processes register the same artifact at once (workers starting together)."""
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
    try:
        with session.begin_nested():
            session.add(version)
    except IntegrityError:  # another process registered it between our look and our insert
        return session.scalars(select(ModelVersion).where(ModelVersion.artifact_sha256 == artifact_sha256)).one()
    return version


class RegistryError(Exception):
    pass


def get_version(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise RegistryError(f"no model version {version_id}")
    return version


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make one version active; the previously active one is retired. Batches enqueued from now on use it."""
    version = get_version(session, version_id)
    session.execute(update(ModelVersion).where(ModelVersion.status == "active").values(status="retired"))
    version.status = "active"
    version.promoted_at = utcnow()
    session.flush()
    return version


def reject(session: Session, version_id: int, reason: str) -> ModelVersion:
    """Keep a candidate on record, never to be served, with the reason."""
    version = get_version(session, version_id)
    version.status, version.status_reason = "rejected", reason
    session.flush()
    return version


def rollback(session: Session) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    current = active_version(session)
    previous = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.status == "retired", ModelVersion.promoted_at.is_not(None), ModelVersion.id != current.id)
        .order_by(ModelVersion.promoted_at.desc())
        .limit(1)
    )
    if previous is None:
        raise RegistryError("no earlier active version to roll back to")
    return promote(session, previous.id)


def active_version(session: Session) -> ModelVersion:
    version = session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))
    if version is None:
        raise NoActiveModel("no active model version: register one with `screen models register`")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
