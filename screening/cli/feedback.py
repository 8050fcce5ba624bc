"""label and retrain: radiologists' ground truth back into the model."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click

from screening.cli.context import AppContext, pass_app
from screening.db.labels import UnknownImage, record_label, screened_image
from screening.db.schema import ImageStatus
from screening.model.artifact import file_sha256

TRUTHS = ("normal", "pneumonia")


def read_label_csv(path: Path) -> list[tuple[str, str]]:
    """(image, truth) rows of a CSV with columns image,truth: comma or semicolon, with or without a BOM."""
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    headers = [name.strip().lower() for name in reader.fieldnames or []]
    if not {"image", "truth"} <= set(headers):
        raise click.ClickException(
            f"{path.name}: the first line must name the columns image and truth (found: {', '.join(headers) or 'none'})"
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        values = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key is not None}
        if not values.get("image") or not values.get("truth"):
            raise click.ClickException(f"{path.name} line {number}: needs both an image and a truth (nothing recorded)")
        rows.append((values["image"], values["truth"].lower()))
    return rows


@click.command()
@click.argument("image", required=False)
@click.option("--truth", type=click.Choice(TRUTHS), help="The radiologist's reading of IMAGE.")
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
    if bool(image) == bool(csv_file) or bool(image) != bool(truth):
        raise click.UsageError("give IMAGE with --truth, or --csv FILE")
    try:
        rows = read_label_csv(Path(csv_file)) if csv_file else [(image, truth)]
    except UnicodeDecodeError:
        raise click.ClickException(f"{Path(csv_file).name} is not UTF-8 text") from None
    source = Path(csv_file).name if csv_file else "cli"
    with app.session_factory.begin() as session:
        for key, value in rows:
            if value not in TRUTHS:
                raise click.ClickException(f"truth must be normal or pneumonia, not {value!r} (nothing recorded)")
            try:
                result = screened_image(session, file_sha256(Path(key)) if Path(key).is_file() else key)
            except UnknownImage as problem:
                raise click.ClickException(f"{problem} (nothing recorded)") from None
            if result.status != ImageStatus.DONE:
                raise click.ClickException(
                    f"{key} was not scored ({result.status}: {result.reason}); only screened images can be labelled "
                    "(nothing recorded)"
                )
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
