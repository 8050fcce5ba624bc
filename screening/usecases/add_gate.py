"""`screen models gate`: a trained version again, with an applicability gate fitted for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from screening.hashing import sha256_hex
from screening.model.artifact import read_manifest
from screening.model.device import import_backend_quietly
from screening.training.sources import SourceSpec
from screening.usecases.candidates import TrainedCandidate, carded, refuse_taken_out, trained_split
from screening.usecases.context import Services
from screening.vocabulary import Population


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
    split, config = trained_split(artifact, manifest, sources, check_dirs)
    refuse_taken_out(services, out, [artifact])
    import_backend_quietly()  # only once everything that can be refused was
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
    return carded(services, gated, out, register)
