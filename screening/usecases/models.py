"""The registry's use cases: list and show versions, register an artifact, promote, roll back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screening.db import registry
from screening.db.schema import ModelVersion, VersionStatus
from screening.model.released import register_artifact, registered_file
from screening.usecases.context import Services

METRICS_SHOWN = ("roc_auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class VersionSummary:
    """One line of `screen models list`."""

    id: int
    name: str
    status: VersionStatus
    threshold: float
    roc_auc: float | None
    sensitivity: float | None
    specificity: float | None
    gate: str | None  # the applicability gate's version, if the version has one
    # per population, its operating point ({"child": {"threshold", "temperature", "target_sensitivity"}, ...});
    # None: `threshold` for every image
    populations: dict[str, dict[str, float]] | None
    created_at: str
    sha256: str  # the first 12 hex digits


def list_models(services: Services) -> list[VersionSummary]:
    with services.sessions() as session:
        return [
            VersionSummary(
                id=v.id,
                name=v.name,
                status=VersionStatus(v.status),
                threshold=v.threshold,
                **{k: v.metrics.get("validation", {}).get(k) for k in METRICS_SHOWN},
                gate=v.gate_version,
                populations=v.populations["points"] if v.populations else None,
                created_at=v.created_at.isoformat(timespec="seconds"),
                sha256=v.artifact_sha256[:12],
            )
            for v in registry.list_versions(session)
        ]


def show_model(services: Services, version_id: int) -> dict[str, Any]:
    """Everything the registry holds about one version, the split's file list summarised to its length."""
    with services.sessions() as session:
        version = registry.get_version(session, version_id)
        data = {key: value for key, value in version.data_manifest.items() if key != "files"}
        return {
            "id": version.id,
            "name": version.name,
            "status": version.status,
            "status_reason": version.status_reason,
            "parent_id": version.parent_id,
            "threshold": version.threshold,
            "gate": {"version": version.gate_version, "threshold": version.gate_threshold},
            "populations": version.populations,
            "metrics": version.metrics,
            "preprocessing": version.preprocessing,
            "training_config": version.training_config,
            "data_manifest": {**data, "files": len(version.data_manifest.get("files", []))},
            "artifact_path": version.artifact_path,
            "artifact_sha256": version.artifact_sha256,
            "created_at": version.created_at.isoformat(),
            "promoted_at": version.promoted_at.isoformat() if version.promoted_at else None,
        }


@dataclass(frozen=True)
class Registration:
    version: ModelVersion
    already_registered: bool  # the same bytes were registered before: nothing new was added


def register_model(services: Services, artifact: Path, activate: bool = False) -> Registration:
    """Load the artifact (a file that is no model is refused), copy it into the registry's store, register it."""
    with services.sessions.begin() as session:
        before = registered_file(session, artifact)
        version = register_artifact(session, artifact, services.settings.registry_dir, activate)
        return Registration(version, before is not None and before.id == version.id)


def promote_model(services: Services, version_id: int) -> ModelVersion:
    """Batches enqueued from now on use this version, without a worker restart."""
    with services.sessions.begin() as session:
        return registry.promote(session, version_id)


def roll_back(services: Services) -> ModelVersion:
    """Re-activate the version that was active before the current one; again to go further back."""
    with services.sessions.begin() as session:
        return registry.rollback(session)
