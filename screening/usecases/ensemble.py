"""`screen models ensemble`: trained single networks as one version that scores the mean of their logits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from screening.errors import InvalidRequest
from screening.hashing import sha256_hex
from screening.model.artifact import read_manifest
from screening.model.device import import_backend_quietly
from screening.model.manifest import Member, RunNotes
from screening.training.sources import SourceSpec
from screening.usecases.candidates import TrainedCandidate, carded, refuse_taken_out, trained_split, training_run
from screening.usecases.context import Services


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
    split, config = trained_split(artifacts[0], first, sources, check_dirs)
    refuse_taken_out(services, out, artifacts)
    import_backend_quietly()  # only once everything that can be refused was
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
    return carded(services, manifest, out, register)
