"""`screen train`: train a candidate on labelled sources, write its artifact, card and report, register it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from screening.db.schema import utcnow
from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.model.device import import_backend_quietly
from screening.model.manifest import DataManifest, RunNotes
from screening.model.preprocessing import SPECS
from screening.model.recipe import TrainingConfig
from screening.model.released import registered_file
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.sources import SourceSpec, multi_source_split
from screening.usecases.candidates import ArtifactTaken, TrainedCandidate, carded, check_sources, training_run
from screening.usecases.context import Services

__all__ = ["SourceSpec", "TrainedCandidate", "TrainingConfig", "train_candidate"]


class CheckpointError(ScreeningError):
    pass


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
    check_sources(sources, config.validation_fraction)
    for folder in check_dirs:
        labelled_folder(folder)
    artifact = out or candidate_path(services)
    with services.sessions() as session:
        taken = registered_file(session, artifact)
    if taken is not None:
        raise ArtifactTaken(f"{artifact} is the artifact of registered model version {taken.id}: choose another --out")
    split = multi_source_split(sources, config.validation_fraction, config.seed, config.commercial_use_only)
    checkpoints = _checkpoints(artifact, config, split.manifest(), resume)
    import_backend_quietly()
    from screening.training.train import train_network

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
    manifest = train_network(run)
    shutil.rmtree(checkpoints)  # finished: nothing left to resume
    return carded(services, manifest, artifact, register)
