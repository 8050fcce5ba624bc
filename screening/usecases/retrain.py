"""`screen retrain` and the nightly retrain: the active version retrained with radiologists' labels, then
promoted if it is not worse on the same validation split, or kept on record as rejected."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from screening.db.labels import radiologist_labels
from screening.db.registry import active_version, promote, reject
from screening.db.results import insert_ignoring_conflict
from screening.db.schema import ModelVersion, RetrainRun, utcnow
from screening.model.artifact import read_manifest
from screening.model.device import import_backend_quietly
from screening.model.figures import BinaryMetrics
from screening.model.manifest import ModelManifest, RunNotes
from screening.training.retraining import (
    LabelledImage,
    RetrainError,
    parent_sources,
    promotion_decision,
    retraining_split,
)
from screening.usecases.candidates import training_run
from screening.usecases.context import Services
from screening.usecases.models import register_model
from screening.vocabulary import VersionStatus


@dataclass(frozen=True)
class RetrainOutcome:
    version_id: int
    name: str
    parent_id: int
    labels: int
    status: VersionStatus
    reason: str

    def describe(self) -> str:
        return (
            f"version {self.version_id} ({self.name}, parent {self.parent_id}, {self.labels} labels): "
            f"{self.status}: {self.reason}"
        )


def _pooled(manifest: ModelManifest) -> BinaryMetrics:
    """A version's validation figures on every image together (none recorded: nothing measured)."""
    return manifest.metrics.validation or BinaryMetrics(images=0)


def retrain_active(services: Services, data_dir: Path | None = None, tolerance: float = 0.0) -> RetrainOutcome:
    """Retrain the active version on its training data (default: the folder it records) plus the labels."""
    settings = services.settings
    with services.sessions() as session:
        active = active_version(session)
        labelled = [LabelledImage(sha, Path(path), pneumonia) for sha, path, pneumonia in radiologist_labels(session)]
    parent = read_manifest(Path(active.artifact_path))
    sources = parent_sources(parent, data_dir)
    split, feedback, changed = retraining_split(parent, sources, labelled)
    out_of_scope = parent.notes.out_of_scope_dir
    if parent.gate is not None and not (out_of_scope and Path(out_of_scope).is_dir()):
        raise RetrainError(
            f"version {active.id} has an applicability gate, and the out-of-scope images it was fitted on "
            f"({out_of_scope or 'not recorded'}) are gone: a retrained version needs a gate of its own"
        )
    notes = RunNotes(
        radiologist_labels=feedback,
        labels_left_out_file_changed=changed,
        out_of_scope_dir=out_of_scope if parent.gate is not None else None,
    )
    artifact = settings.data_dir / "models" / f"retrained-{utcnow():%Y%m%dT%H%M%S}.zip"
    import_backend_quietly()  # only once everything that can be refused was
    from screening.training.train import train_network

    run = training_run(
        services,
        split,
        parent.training_config,
        artifact,
        sources,
        (),
        notes,
        name=f"{parent.name.removesuffix('-retrained')}-retrained",
        # one network, also when the active version is an ensemble of several
        architecture=replace(parent.architecture, members=1),
        spec=parent.preprocessing,
        out_of_scope=Path(out_of_scope) if parent.gate is not None and out_of_scope else None,
    )
    manifest = train_network(run)
    decision = promotion_decision(_pooled(parent), _pooled(manifest), tolerance)
    registered = register_model(services, artifact, parent_id=active.id).version
    with services.sessions.begin() as session:
        version = session.get_one(ModelVersion, registered.id)
        if decision.promote:
            promote(session, version.id).status_reason = decision.reason
        else:
            reject(session, version.id, decision.reason)
        status = VersionStatus(version.status)
        return RetrainOutcome(version.id, version.name, active.id, len(labelled), status, decision.reason)


def nightly_retrain(services: Services, task_id: str | None) -> str:
    """The scheduled retrain: at most one per night (UTC date), however often its message is delivered.

    The night is claimed in the database before training starts, so a redelivered, duplicated or overlapping
    message finds it taken and does nothing; a run that died is not repeated that night (it says so)."""
    night = utcnow().date().isoformat()
    with services.sessions.begin() as session:
        claimed = session.scalar(
            insert_ignoring_conflict(session, RetrainRun)
            .values(night=night, task_id=task_id, started_at=utcnow())
            .returning(RetrainRun.night)
        )
    if claimed is None:
        return f"retrain for {night} already ran or is running: nothing done"
    try:
        outcome = retrain_active(services).describe()
    except Exception as error:  # recorded for the morning; the task itself must not be retried tonight
        outcome = f"failed: {error}"
    with services.sessions.begin() as session:
        run = session.get_one(RetrainRun, night)
        run.finished_at, run.outcome = utcnow(), outcome
    return outcome
