"""`screen models operating-points`: a trained network again, with an operating point per population."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from screening.db.schema import utcnow
from screening.errors import InvalidRequest
from screening.hashing import sha256_hex
from screening.model.artifact import read_manifest
from screening.model.device import import_backend_quietly
from screening.model.figures import Metrics
from screening.model.manifest import ModelManifest, RunNotes
from screening.training.sources import SourceSpec
from screening.usecases.candidates import TrainedCandidate, carded, checked_split, refuse_taken_out
from screening.usecases.context import Services
from screening.vocabulary import Population


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
    split = checked_split(sources, config, check_dirs)
    trained_on = set(manifest.data_manifest.hashes("train"))
    seen = [example.path.name for example in split.validation if example.sha256 in trained_on]
    if seen:
        raise InvalidRequest(
            f"{len(seen)} validation film(s) of these sources were in {artifact.name}'s training side (e.g. "
            f"{seen[0]}): operating points must be chosen on films it never trained on"
        )
    refuse_taken_out(services, out, [artifact])
    import_backend_quietly()  # only once everything that can be refused was
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
    pointed = replace(pointed, metrics=replace(fitted.over(metrics), checks=checks))
    pointed = replace(
        pointed,
        artifact_sha256=save_classifier(classifier.model, pointed, out, classifier.gate, fitted.estimate),
    )
    return carded(services, pointed, out, register)
