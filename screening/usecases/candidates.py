"""What every use case that makes a new version shares: its folders checked before a backend loads, the
run's inputs from the settings, the split of the artifact it starts from, its card, and its registration."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screening.errors import Conflict, InvalidRequest
from screening.model.card import render_model_card
from screening.model.manifest import ModelManifest, RunNotes
from screening.model.recipe import TrainingConfig
from screening.model.released import registered_file
from screening.training.labelled import labelled_folder
from screening.training.sources import SourceSpec, multi_source_split
from screening.training.split import Split, check_training_folder
from screening.usecases.context import Services
from screening.usecases.models import VersionRecord, register_model
from screening.usecases.weights import fetch_backbone_weights

if TYPE_CHECKING:  # the training module loads a Keras backend: only when a run starts
    from screening.training.train import TrainingRun


class ArtifactTaken(Conflict):
    pass


@dataclass(frozen=True)
class TrainedCandidate:
    manifest: ModelManifest
    artifact: Path
    version: VersionRecord | None  # None when not registered


def check_sources(sources: list[SourceSpec], validation_fraction: float) -> None:
    """Refuse, before a backend loads, a source that cannot give a training and a validation side."""
    for spec in sources:
        if spec.validation is None:
            check_training_folder(spec.train, validation_fraction)
        else:
            labelled_folder(spec.train)
            labelled_folder(spec.validation)


def training_run(
    services: Services,
    split: Split,
    config: TrainingConfig,
    artifact: Path,
    sources: list[SourceSpec],
    check_dirs: tuple[Path, ...],
    notes: RunNotes,
    **steps: Any,
) -> TrainingRun:
    """A training run with what every run takes from the settings (the ImageNet weights, the feature cache, the
    image limits) and records (its sources, and a single patient-split source's folder as `data_dir`, where
    retraining finds them; its check folders); `steps` are TrainingRun's other fields."""
    from screening.training.train import TrainingRun

    single_folder = len(sources) == 1 and sources[0].validation is None
    recorded = replace(
        notes,
        sources={spec.name: spec.describe() for spec in sources},
        data_dir=str(sources[0].train.resolve()) if single_folder else None,
    )
    return TrainingRun(
        split=split,
        weights_file=fetch_backbone_weights(services.settings),
        artifact_path=artifact,
        cache_dir=services.settings.data_dir / "cache",
        config=config,
        limits=services.settings.image_limits,
        notes=recorded,
        checks={folder.name: folder for folder in check_dirs},
        **steps,
    )


def carded(services: Services, manifest: ModelManifest, artifact: Path, register: bool) -> TrainedCandidate:
    """The card beside a new artifact, and the artifact registered as a candidate when asked."""
    (artifact.parent / "MODEL_CARD.md").write_text(render_model_card(manifest, artifact.name))
    if not register:
        return TrainedCandidate(manifest, artifact, None)
    return TrainedCandidate(manifest, artifact, register_model(services, artifact).version)


def checked_split(sources: list[SourceSpec], config: TrainingConfig, check_dirs: tuple[Path, ...]) -> Split:
    """The split `sources` give by `config`'s recipe, every folder checked first (before a backend loads)."""
    check_sources(sources, config.validation_fraction)
    for folder in check_dirs:
        labelled_folder(folder)
    return multi_source_split(sources, config.validation_fraction, config.seed, config.commercial_use_only)


def trained_split(
    artifact: Path, manifest: ModelManifest, sources: list[SourceSpec], check_dirs: tuple[Path, ...]
) -> tuple[Split, TrainingConfig]:
    """The split `artifact` was trained on, rebuilt from `sources` (refused when they do not give its validation
    side: its figures would be on other films), and its recipe; every folder checked before a backend loads."""
    config = manifest.training_config
    split = checked_split(sources, config, check_dirs)
    if sorted(example.sha256 for example in split.validation) != sorted(manifest.validation_hashes()):
        raise InvalidRequest(f"these sources do not give the validation split {artifact.name} was trained with")
    return split, config


def refuse_taken_out(services: Services, out: Path, inputs: list[Path]) -> None:
    """Refuse an `out` that is a registered artifact or one of the inputs."""
    with services.sessions() as session:
        taken = registered_file(session, out)
    if taken is not None or any(out.resolve() == path.resolve() for path in inputs):
        raise ArtifactTaken(f"{out} is a registered or an input artifact: choose another --out")
