"""Retraining with radiologists' labels, judged on the active version's own validation split.

The validation split never changes between a version and its retrained child, so their
metrics compare like with like; the child is promoted only if it is not worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings
from screening.db.labels import labelled_images
from screening.db.registry import active_version, promote, reject
from screening.db.results import insert_ignoring_conflict
from screening.db.schema import RetrainRun, utcnow
from screening.model.released import register_artifact
from screening.model.weights import fetch_imagenet_weights
from screening.training.config import TrainingConfig
from screening.training.split import Example, list_examples
from screening.training.train import fit_model

GATED = ("roc_auc", "sensitivity")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(active: dict, candidate: dict, tolerance: float = 0.0) -> Decision:
    """Promote when ROC AUC and sensitivity at the threshold are each at least the active version's - tolerance."""
    compared = [f"{name} {candidate[name]:.4f} vs {active[name]:.4f}" for name in GATED]
    worse = [text for name, text in zip(GATED, compared, strict=True) if candidate[name] < active[name] - tolerance]
    if worse:
        return Decision(False, "worse than the active version on the same validation split: " + "; ".join(worse))
    return Decision(True, "not worse than the active version on the same validation split: " + "; ".join(compared))


def retrain(
    active_manifest: dict,
    data_dir: Path,
    labelled: list[tuple[str, str, bool]],
    weights_file: Path,
    artifact_path: Path,
    cache_dir: Path,
    tolerance: float = 0.0,
) -> tuple[dict, Decision]:
    """Train on DATA_DIR's training side plus the labelled images; compare on the fixed validation split."""
    examples = {example.sha256: example for example in list_examples(data_dir)}
    validation_hashes = [
        row["sha256"] for row in active_manifest["data_manifest"]["files"] if row["split"] == "validation"
    ]
    missing = [sha for sha in validation_hashes if sha not in examples]
    if missing:
        raise ValueError(f"{len(missing)} images of the active version's validation split are not in {data_dir}")
    validation = [examples[sha] for sha in validation_hashes]
    held_out = set(validation_hashes)
    feedback = [
        Example(Path(path), int(pneumonia), "radiologist label", sha)
        for sha, path, pneumonia in labelled
        if sha not in held_out and Path(path).is_file()
    ]
    train = [example for sha, example in examples.items() if sha not in held_out] + feedback
    config = TrainingConfig.from_dict(active_manifest["training_config"], ignore_unknown=True)
    manifest = fit_model(
        train,
        validation,
        weights_file,
        artifact_path,
        cache_dir,
        config,
        name=f"{active_manifest['name'].removesuffix('-retrained')}-retrained",
        notes={"data_dir": str(data_dir.resolve()), "radiologist_labels": len(feedback)},
    )
    return manifest, promotion_decision(
        active_manifest["metrics"]["validation"], manifest["metrics"]["validation"], tolerance
    )


@dataclass(frozen=True)
class RetrainOutcome:
    version_id: int
    name: str
    parent_id: int
    labels: int
    status: str
    reason: str

    def describe(self) -> str:
        return (
            f"version {self.version_id} ({self.name}, parent {self.parent_id}, {self.labels} labels): "
            f"{self.status}: {self.reason}"
        )


def retrain_active(
    session_factory: sessionmaker[Session], settings: Settings, data_dir: Path | None = None, tolerance: float = 0.0
) -> RetrainOutcome:
    """`screen retrain` and the nightly task: retrain, register the child, promote or reject it."""
    with session_factory() as session:
        active = active_version(session)
        labelled = labelled_images(session)
    data = data_dir or (Path(active.training_config["data_dir"]) if "data_dir" in active.training_config else None)
    if data is None:
        raise ValueError(f"version {active.id} does not record its training data: pass it explicitly")
    artifact = settings.data_dir / "models" / f"retrained-{utcnow():%Y%m%dT%H%M%S}.zip"
    active_manifest = {
        "name": active.name,
        "data_manifest": active.data_manifest,
        "metrics": active.metrics,
        "training_config": active.training_config,
    }
    _, decision = retrain(
        active_manifest,
        data,
        labelled,
        fetch_imagenet_weights(settings.weights_dir),
        artifact,
        settings.data_dir / "cache",
        tolerance,
    )
    with session_factory.begin() as session:
        version = register_artifact(session, artifact, settings.registry_dir, parent_id=active.id)
        if decision.promote:
            promote(session, version.id).status_reason = decision.reason
        else:
            reject(session, version.id, decision.reason)
        return RetrainOutcome(version.id, version.name, active.id, len(labelled), version.status, decision.reason)


def nightly_retrain(session_factory: sessionmaker[Session], settings: Settings, task_id: str | None) -> str:
    """The scheduled retrain: at most one per night (UTC date), however often its message is delivered.

    The night is claimed in the database before training starts, so a redelivered, duplicated or overlapping
    message finds it taken and does nothing; a run that died is not repeated that night (it says so)."""
    night = utcnow().date().isoformat()
    with session_factory.begin() as session:
        claimed = session.scalar(
            insert_ignoring_conflict(session, RetrainRun)
            .values(night=night, task_id=task_id, started_at=utcnow())
            .returning(RetrainRun.night)
        )
    if claimed is None:
        return f"retrain for {night} already ran or is running: nothing done"
    try:
        outcome = retrain_active(session_factory, settings).describe()
    except Exception as error:  # recorded for the morning; the task itself must not be retried tonight
        outcome = f"failed: {error}"
    with session_factory.begin() as session:
        run = session.get_one(RetrainRun, night)
        run.finished_at, run.outcome = utcnow(), outcome
    return outcome
