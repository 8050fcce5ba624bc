"""The model registry: which versions exist, how they scored, and which one is active."""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from screening.db.schema import ModelActivation, ModelVersion, utcnow
from screening.errors import Conflict, NotFound, ScreeningError
from screening.vocabulary import VersionStatus


class RegistryError(ScreeningError):
    pass


class NoSuchVersion(RegistryError, NotFound):
    pass


class NoActiveModel(RegistryError, Conflict):
    pass


def register_version(
    session: Session,
    manifest: dict[str, Any],
    artifact_path: str,
    artifact_sha256: str,
    parent_id: int | None = None,
    reference_check: dict[str, Any] | None = None,
) -> ModelVersion:
    """Add a candidate version described by its artifact's manifest (as stored: model.manifest writes it), or return
    the one already registered with this artifact. The registry keeps a copy of what the manifest says.

    Safe when several processes register the same artifact at once (workers starting together)."""
    existing = session.scalar(select(ModelVersion).where(ModelVersion.artifact_sha256 == artifact_sha256))
    if existing is not None:
        return existing
    gate = manifest.get("gate")
    version = ModelVersion(
        name=manifest["name"],
        artifact_path=artifact_path,
        artifact_sha256=artifact_sha256,
        parent_id=parent_id,
        preprocessing=manifest["preprocessing"],
        training_config=manifest["training_config"],
        data_manifest=manifest["data_manifest"],
        metrics=manifest["metrics"],
        threshold=manifest["threshold"],
        gate_version=gate["version"] if gate else None,
        gate_threshold=gate["threshold"] if gate else None,
        populations=manifest.get("populations"),
        reference_check=reference_check,
        status=VersionStatus.CANDIDATE,
    )
    try:
        with session.begin_nested():
            session.add(version)
    except IntegrityError:  # another process registered it between our look and our insert
        return session.scalars(select(ModelVersion).where(ModelVersion.artifact_sha256 == artifact_sha256)).one()
    return version


def get_version(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NoSuchVersion(f"no model version {version_id}")
    return version


def lock_registry(session: Session) -> None:
    """Serialise whoever changes which version is active, until this transaction ends: row locks on PostgreSQL;
    on SQLite, the database's write lock, taken by a write that changes nothing (it must come first: SQLite
    cannot take the lock later in a transaction that has read since another one wrote)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(ModelVersion.id).with_for_update())
    else:
        session.execute(update(ModelVersion).where(false()).values(status=ModelVersion.status))


def _activate(session: Session, version: ModelVersion) -> ModelVersion:
    """`version` active and every other active one retired, in SQL (the ORM's idea of the rows may be stale)."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == VersionStatus.ACTIVE, ModelVersion.id != version.id)
        .values(status=VersionStatus.RETIRED)
    )
    session.execute(update(ModelVersion).where(ModelVersion.id == version.id).values(status=VersionStatus.ACTIVE))
    session.flush()
    session.expire_all()
    return session.get_one(ModelVersion, version.id)


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make one version active; the previously active one is retired. Batches enqueued from now on use it."""
    lock_registry(session)
    version = get_version(session, version_id)
    if version.status == VersionStatus.REJECTED:
        raise RegistryError(f"version {version_id} was rejected ({version.status_reason}); register it again to use it")
    version.promoted_at = utcnow()
    session.add(ModelActivation(model_version_id=version.id, activated_at=version.promoted_at))
    return _activate(session, version)


def reject(session: Session, version_id: int, reason: str) -> ModelVersion:
    """Keep a candidate on record, never to be served, with the reason."""
    version = get_version(session, version_id)
    version.status, version.status_reason = VersionStatus.REJECTED, reason
    session.flush()
    return version


def rollback(session: Session) -> ModelVersion:
    """Re-activate the version that was active before the current one, walking back through the history:
    a second rollback goes one step further back, never forth to the version just rolled back."""
    lock_registry(session)
    current = active_version(session)
    history = list(
        session.scalars(
            select(ModelActivation).where(ModelActivation.rolled_back_at.is_(None)).order_by(ModelActivation.id.desc())
        )
    )
    # The newest standing activation is the current one; the first earlier one of another version is the target.
    earlier = [entry for entry in history[1:] if entry.model_version_id != current.id]
    if not earlier:
        raise RegistryError("no earlier active version to roll back to")
    now = utcnow()
    for entry in history[: history.index(earlier[0])]:
        entry.rolled_back_at = now
    return _activate(session, get_version(session, earlier[0].model_version_id))


def active_version(session: Session) -> ModelVersion:
    version = session.scalar(select(ModelVersion).where(ModelVersion.status == VersionStatus.ACTIVE))
    if version is None:
        raise NoActiveModel("no active model version: register one with `screen models register`")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
