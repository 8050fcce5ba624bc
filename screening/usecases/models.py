"""The registry's use cases: list and show versions, register an artifact, promote, roll back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from screening.db import registry
from screening.db.schema import ModelVersion, VersionStatus
from screening.model.artifact import read_manifest, verify_artifact_file
from screening.model.card import render_model_card
from screening.model.released import register_artifact, registered_file
from screening.training.reference import ReferenceCheck
from screening.usecases.context import Services

METRICS_SHOWN = ("roc_auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class VersionSummary:
    """One line of `screen models list`."""

    id: int
    name: str
    status: VersionStatus
    threshold: float
    # claimed by the artifact's manifest (its own validation split): not measured here
    claimed_roc_auc: float | None
    claimed_sensitivity: float | None
    claimed_specificity: float | None
    # measured at registration on the reference films (training.reference); None: registered without them
    reference: str | None
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
                **{f"claimed_{k}": v.metrics.get("validation", {}).get(k) for k in METRICS_SHOWN},
                reference=describe_reference(v.reference_check),
                gate=v.gate_version,
                populations=v.populations["points"] if v.populations else None,
                created_at=v.created_at.isoformat(timespec="seconds"),
                sha256=v.artifact_sha256[:12],
            )
            for v in registry.list_versions(session)
        ]


def describe_reference(stored: dict[str, Any] | None) -> str | None:
    """A version's reference-film figures in one line, as measured when it was registered."""
    return ReferenceCheck.from_dict(stored).describe() if stored else None


def model_card(services: Services, version_id: int) -> str:
    """A registered version's model card (Markdown), made from its artifact's manifest as the release's card is:
    every source and population with intervals, the operating points, the gate and the consistency figures."""
    with services.sessions() as session:
        version = registry.get_version(session, version_id)
        path, sha256 = Path(version.artifact_path), version.artifact_sha256
    verify_artifact_file(path, sha256)
    manifest = replace(read_manifest(path), artifact_sha256=sha256)
    return render_model_card(manifest, path.name)


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
            "metrics": version.metrics,  # as its manifest claims them
            "reference_check": version.reference_check,  # measured at registration
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


def register_model(
    services: Services, artifact: Path, activate: bool = False, parent_id: int | None = None
) -> Registration:
    """Score the artifact on the reference films as a worker would (what does not load, or does not serve what it
    claims, is refused with one line), copy it into the registry's store, register it with those figures."""
    from screening.training.reference import check_reference_films  # loads a Keras backend

    with services.sessions() as session:
        before = registered_file(session, artifact)
    check = None if before is not None else check_reference_films(artifact).to_dict()
    with services.sessions.begin() as session:
        version = register_artifact(session, artifact, services.settings.registry_dir, activate, parent_id, check)
        return Registration(version, before is not None and before.id == version.id)


def promote_model(services: Services, version_id: int) -> ModelVersion:
    """Batches enqueued from now on use this version, without a worker restart."""
    with services.sessions.begin() as session:
        return registry.promote(session, version_id)


def roll_back(services: Services) -> ModelVersion:
    """Re-activate the version that was active before the current one; again to go further back."""
    with services.sessions.begin() as session:
        return registry.rollback(session)
