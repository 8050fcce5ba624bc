"""label and retrain: radiologists' ground truth back into the model."""

from __future__ import annotations

from pathlib import Path

import click

from screening.cli.context import AppContext, pass_app
from screening.usecases.label import Truth, read_label_csv, record_labels
from screening.usecases.retrain import retrain_active


@click.command()
@click.argument("image", required=False)
@click.option(
    "--truth", type=click.Choice([truth.value for truth in Truth]), help="The radiologist's reading of IMAGE."
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Many labels: columns image,truth (comma or semicolon; image = path, SHA-256 or SOPInstanceUID).",
)
@pass_app
def label(app: AppContext, image: str | None, truth: str | None, csv_file: str | None) -> None:
    """Record ground truth for a screened IMAGE (file path, SHA-256 or SOPInstanceUID), or a CSV of them.

    Only images the model scored can be labelled: a skipped or failed file is no training example."""
    if csv_file:
        if image or truth:
            raise click.UsageError("give IMAGE with --truth, or --csv FILE")
        count = record_labels(app.services, read_label_csv(Path(csv_file)), Path(csv_file).name)
    elif image and truth:
        count = record_labels(app.services, [(image, truth)], "cli")
    else:
        raise click.UsageError("give IMAGE with --truth, or --csv FILE")
    click.echo(f"{count} label(s) recorded")


@click.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The original training data (default: the folder the active version was trained on).",
)
@click.option(
    "--tolerance", default=0.0, show_default=True, help="How much lower AUC/sensitivity still counts as not worse."
)
@pass_app
def retrain(app: AppContext, data_dir: str | None, tolerance: float) -> None:
    """Retrain the active model with radiologists' labels; promote the result only if it is not worse."""
    click.echo(retrain_active(app.services, Path(data_dir) if data_dir else None, tolerance).describe())
