"""label and retrain: radiologists' ground truth back into the model."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from screening.cli.context import AppContext, pass_app
from screening.db.labels import UnknownImage, record_label, screened_image
from screening.model.artifact import file_sha256

TRUTHS = ("normal", "pneumonia")


@click.command()
@click.argument("image", required=False)
@click.option("--truth", type=click.Choice(TRUTHS))
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False), help="Columns: image,truth.")
@pass_app
def label(app: AppContext, image: str | None, truth: str | None, csv_file: str | None) -> None:
    """Record ground truth for a screened IMAGE (file path, SHA-256 or SOPInstanceUID), or a CSV of them."""
    if bool(image) == bool(csv_file) or bool(image) != bool(truth):
        raise click.UsageError("give IMAGE with --truth, or --csv FILE")
    if csv_file:
        with open(csv_file, newline="") as stream:
            rows = [(row["image"].strip(), row["truth"].strip().lower()) for row in csv.DictReader(stream)]
    else:
        rows = [(image, truth)]
    source = Path(csv_file).name if csv_file else "cli"
    with app.session_factory.begin() as session:
        for key, value in rows:
            if value not in TRUTHS:
                raise click.ClickException(f"truth must be normal or pneumonia, not {value!r}")
            try:
                result = screened_image(session, file_sha256(Path(key)) if Path(key).is_file() else key)
            except UnknownImage as problem:
                raise click.ClickException(f"{problem} (nothing recorded)") from None
            record_label(session, result.sha256, value == "pneumonia", source)
    click.echo(f"{len(rows)} label(s) recorded")


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
    from screening.training.retrain import retrain_active

    try:
        outcome = retrain_active(app.session_factory, app.settings, Path(data_dir) if data_dir else None, tolerance)
    except ValueError as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(outcome.describe())
