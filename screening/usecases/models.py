"""The registry's use cases: list and show versions, register an artifact, promote, roll back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from screening.db import registry
from screening.db.schema import ModelVersion
from screening.model.artifact import read_manifest, verify_artifact_file
from screening.model.card import render_model_card
from screening.model.figures import BinaryMetrics, Metrics
from screening.model.manifest import DataManifest, ModelManifest, PointRecord, PopulationsRecord, RunNotes
from screening.model.preprocessing import PreprocessSpec
from screening.model.recipe import TrainingConfig
from screening.model.released import register_artifact, registered_file
from screening.training.reference import ReferenceCheck
from screening.usecases.context import Services
from screening.vocabulary import VersionStatus

METRICS_SHOWN = ("roc_auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class VersionRecord:
    """A registered version as a command reports it."""

    id: int
    name: str
    status: VersionStatus
    status_reason: str | None
    # measured at registration on the reference films (training.reference); None: registered without them
    reference: str | None
    artifact_sha256: str

    @classmethod
    def of(cls, row: ModelVersion) -> VersionRecord:
        reference = describe_reference(row.reference_check)
        return cls(row.id, row.name, VersionStatus(row.status), row.status_reason, reference, row.artifact_sha256)


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
    # per population, its operating point; None: `threshold` for every image
    populations: dict[str, PointRecord] | None
    created_at: str
    sha256: str  # the first 12 hex digits


@dataclass(frozen=True)
class VersionDetail:
    """Everything the registry holds about one version: what its manifest claims, copied at registration (the
    split's file list summarised to its length), and what was measured then."""

    id: int
    name: str
    status: VersionStatus
    status_reason: str | None
    parent_id: int | None
    threshold: float
    gate_version: str | None
    gate_threshold: float | None
    populations: PopulationsRecord | None
    metrics: Metrics  # as its manifest claims them
    reference: str | None  # measured at registration
    preprocessing: PreprocessSpec
    training_config: TrainingConfig
    notes: RunNotes
    data: DataManifest  # without its file list
    files: int
    artifact_path: str
    artifact_sha256: str
    created_at: str
    promoted_at: str | None


def _claimed(row: ModelVersion) -> ModelManifest:
    """The manifest as the registry copied it (its architecture and gate are in the artifact, not the registry)."""
    return ModelManifest.from_dict(
        {
            "name": row.name,
            "architecture": {},
            "threshold": row.threshold,
            "preprocessing": row.preprocessing,
            "training_config": row.training_config,
            "data_manifest": row.data_manifest,
            "metrics": row.metrics,
            "populations": row.populations,
        }
    )


def list_models(services: Services) -> list[VersionSummary]:
    with services.sessions() as session:
        summaries = []
        for row in registry.list_versions(session):
            claimed = _claimed(row)
            validation = claimed.metrics.validation or BinaryMetrics(images=0)
            summaries.append(
                VersionSummary(
                    id=row.id,
                    name=row.name,
                    status=VersionStatus(row.status),
                    threshold=row.threshold,
                    claimed_roc_auc=validation.roc_auc,
                    claimed_sensitivity=validation.sensitivity,
                    claimed_specificity=validation.specificity,
                    reference=describe_reference(row.reference_check),
                    gate=row.gate_version,
                    populations=claimed.populations.points if claimed.populations else None,
                    created_at=row.created_at.isoformat(timespec="seconds"),
                    sha256=row.artifact_sha256[:12],
                )
            )
        return summaries


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


def show_model(services: Services, version_id: int) -> VersionDetail:
    """Everything the registry holds about one version, the split's file list summarised to its length."""
    with services.sessions() as session:
        row = registry.get_version(session, version_id)
        claimed = _claimed(row)
        return VersionDetail(
            id=row.id,
            name=row.name,
            status=VersionStatus(row.status),
            status_reason=row.status_reason,
            parent_id=row.parent_id,
            threshold=row.threshold,
            gate_version=row.gate_version,
            gate_threshold=row.gate_threshold,
            populations=claimed.populations,
            metrics=claimed.metrics,
            reference=describe_reference(row.reference_check),
            preprocessing=claimed.preprocessing,
            training_config=claimed.training_config,
            notes=claimed.notes,
            data=replace(claimed.data_manifest, files=[]),
            files=len(claimed.data_manifest.files),
            artifact_path=row.artifact_path,
            artifact_sha256=row.artifact_sha256,
            created_at=row.created_at.isoformat(),
            promoted_at=row.promoted_at.isoformat() if row.promoted_at else None,
        )


@dataclass(frozen=True)
class Registration:
    version: VersionRecord
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
        return Registration(VersionRecord.of(version), before is not None and before.id == version.id)


def promote_model(services: Services, version_id: int) -> VersionRecord:
    """Batches enqueued from now on use this version, without a worker restart."""
    with services.sessions.begin() as session:
        return VersionRecord.of(registry.promote(session, version_id))


def roll_back(services: Services) -> VersionRecord:
    """Re-activate the version that was active before the current one; again to go further back."""
    with services.sessions.begin() as session:
        return VersionRecord.of(registry.rollback(session))
