"""enqueue, requeue, status, results, preview: the commands a night's screening is run and read with."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from screening.cli.context import AppContext, loads_backend, pass_app
from screening.cli.tables import add_row, make_table, print_table
from screening.model.device import import_backend_quietly
from screening.usecases.enqueue import EnqueueEvents, enqueue_folders, requeue
from screening.usecases.explain import write_explanation
from screening.usecases.preview import write_preview
from screening.usecases.results import (
    INTERRUPTED_HINT,
    SCORE_FIELDS,
    BatchProgress,
    ImageRow,
    StrandedWork,
    StudyLine,
    batch_results,
    batch_status,
    operating_point,
    recent_batches,
    utc_text,
)
from screening.vocabulary import Population

console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _summary(progress: BatchProgress) -> str:
    parts = [f"{progress.total} files", f"{progress.studies} DICOM studies" if progress.studies else None]
    parts += [f"{count} {name}" for name, count in sorted(progress.by_status.items())]
    parts += [
        f"{progress.reused} already screened by this model" if progress.reused else None,
        f"{progress.pending} pending" if progress.pending else None,
    ]
    return ", ".join(p for p in parts if p)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--wait",
    is_flag=True,
    help="With a broker: show progress until every image is screened (without one, enqueue always waits).",
)
@click.option(
    "--population",
    type=click.Choice([population.value for population in Population]),
    help="The population of these folders' images (children under 18, or adults): decides the operating point of "
    "each image whose DICOM header gives no valid age, instead of the model's age-group estimate.",
)
@pass_app
def enqueue(app: AppContext, paths: tuple[str, ...], wait: bool, population: str | None) -> None:
    """Find radiographs under PATHS and queue them for screening.

    Exits with status 1 when the batch ended with failed files (`screen results` says why), 0 otherwise."""
    in_process = not app.settings.distributed
    services = app.services
    bar = _progress()  # shown from the count on: what is refused before it is one line, without an empty bar
    found = bar.add_task("screened" if in_process else "enqueued", total=None)
    screened = bar.add_task("screened", total=None, visible=False)

    def counted(files: int) -> None:
        if in_process:  # loaded only now: a folder with nothing to screen is answered without waiting for it
            backend = import_backend_quietly()
            console.print(
                "No broker configured (SCREEN_BROKER_URL unset): screening in this process "
                f"(Keras backend {backend}, dtype policy {app.settings.dtype_policy}).",
                soft_wrap=True,
            )
        bar.start()
        bar.update(found, total=files)

    def started(batch_id: str, version_id: int, version_name: str) -> None:
        click.echo(f"batch {batch_id} (model version {version_id}: {version_name})")

    def progress(done: int, total: int) -> None:
        bar.update(found, visible=False)
        bar.update(screened, visible=True, total=total, completed=done)

    events = EnqueueEvents(counted, started, lambda count: bar.advance(found, count), progress)
    try:
        outcome = enqueue_folders(
            services, [Path(p) for p in paths], wait, events, Population(population) if population else None
        )
    finally:
        bar.stop()
    click.echo(_summary(outcome.progress))
    if outcome.failed:
        click.echo(f"{outcome.failed} file(s) failed: `screen results {outcome.progress.batch_id}` says why", err=True)
        raise click.exceptions.Exit(1)


@click.command("requeue")
@click.argument("batch_id", required=False)
@pass_app
def requeue_command(app: AppContext, batch_id: str | None) -> None:
    """Dispatch again what a batch (default: the latest) claimed and nobody screened: after a broker lost its
    queue, or an enqueue that was stopped (whose remaining files it records). Without a broker, screens those images
    in this process."""
    if not app.settings.distributed:
        import_backend_quietly()
    done = requeue(app.services, batch_id)
    verb = "dispatched again" if app.settings.distributed else "screened"
    resumed = f"; {done.resumed_files} files its enqueue had not reached recorded" if done.resumed_files else ""
    click.echo(f"batch {done.batch_id}: {done.images} images {verb}{resumed}")


@click.command()
@click.argument("batch_id", required=False)
@pass_app
def status(app: AppContext, batch_id: str | None) -> None:
    """Progress of a batch (default: the latest)."""
    progress = batch_status(app.services, batch_id)
    hint = f" ({INTERRUPTED_HINT})" if progress.interrupted else ""
    click.echo(f"batch {progress.batch_id}: {progress.state}{hint}: {_summary(progress)}")
    for stranded in progress.stranded:
        click.echo(_stranded_line(stranded))


@click.command()
@click.option("--last", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many batches.")
@pass_app
def batches(app: AppContext, last: int) -> None:
    """The latest batches, newest first: an id's first eight characters name it in every command."""
    table = make_table(["batch", "created (UTC)", "model", "files", "state", "folders"])
    for line in recent_batches(app.services, last):
        progress = line.progress
        add_row(
            table,
            [
                progress.batch_id[:8],
                utc_text(line.created_at),
                str(line.model_version_id),
                str(progress.total),
                f"{progress.state}: {_summary(progress)}",
                ", ".join(line.roots),
            ],
        )
    print_table(table)


def _stranded_line(stranded: StrandedWork) -> str:
    held = f"{stranded.images} image(s) held by {stranded.holder}, which stopped renewing its lease"
    if stranded.taken_over_at is None:
        return (
            f"{held} (lapsed {utc_text(stranded.lapsed_at)}): not taken over yet; a running worker, "
            "`screen enqueue --wait` or `screen requeue` takes them over"
        )
    return f"{held}: taken over {utc_text(stranded.taken_over_at)}"


RESULT_COLUMNS = [
    "path",
    "status",
    *SCORE_FIELDS,
    "reason",
    "model_version",
    "already_screened",
    "sha256",
    "study_uid",
    "sop_uid",
]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (=HYPERLINK(...)) gets a leading apostrophe (OWASP)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value


@click.command()
@click.argument("batch_id", required=False)
@click.option("--flagged", is_flag=True, help="Only images (or studies) flagged for pneumonia.")
@click.option("--studies", is_flag=True, help="One row per DICOM study: highest image probability, and why none.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table for people; csv (formula-safe for spreadsheets) or json for tools.",
)
@pass_app
def results(app: AppContext, batch_id: str | None, flagged: bool, studies: bool, output: str) -> None:
    """Results of a batch (default: the latest)."""
    found = batch_results(app.services, batch_id, flagged_only=flagged)
    rows: list[ImageRow] | list[StudyLine] = found.studies if studies else found.images
    records = [asdict(row) for row in rows]
    if output == "json":
        click.echo(json.dumps(records, indent=2))
    elif output == "csv":
        columns = [f.name for f in fields(StudyLine)] if studies else RESULT_COLUMNS
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: spreadsheet_safe(value) for key, value in record.items()} for record in records)
    else:
        title = f"batch {found.batch_id}, model version {found.model_version_id}"
        print_table(_study_table(found.studies, title) if studies else _image_table(found.images, found.roots, title))


def _probability(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _image_table(rows: list[ImageRow], roots: list[str], title: str) -> Table:
    """For people: each file relative to what was enqueued, its call, and why when there is no score."""
    base = os.path.commonpath(roots) if len(roots) > 1 else roots[0]
    base = base if os.path.isdir(base) else os.path.dirname(base)
    table = make_table(["file", "status", "P(pneumonia)", "flag", "operating point", "note"], title)
    for row in rows:
        note = row.reason or ("already screened" if row.already_screened else "")
        flag = "FLAG" if row.flagged else ""
        cells = [
            os.path.relpath(row.path, base),
            row.status,
            _probability(row.probability),
            flag,
            operating_point(row),
            note,
        ]
        add_row(table, cells)
    return table


def _study_table(rows: list[StudyLine], title: str) -> Table:
    table = make_table(["study", "images", "screened", "P(pneumonia)", "flag", "note", "DICOM results"], title)
    for row in rows:
        flag = "FLAG" if row.flagged else ""
        cells = [row.study_uid, row.images, row.images_screened, _probability(row.probability), flag, row.note]
        add_row(table, [*cells, row.sent])
    return table


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Image to write: a .png (or .jpg) path."
)
@pass_app
def preview(app: AppContext, file: str, output: str) -> None:
    """Write the exact 224x224 image the active model sees for FILE (before the in-graph ImageNet normalisation)."""
    spec, (width, height) = write_preview(app.services, Path(file), Path(output))
    click.echo(f"wrote {output} ({spec.name}, {width}x{height})")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="A .png (or .jpg) to write.")
@pass_app
@loads_backend
def explain(app: AppContext, file: str, output: str) -> None:
    """Write FILE with the active model's Grad-CAM heatmap over it (red: where the evidence for pneumonia sits)."""
    explanation = write_explanation(app.services, Path(file), Path(output))
    flag = " FLAG" if explanation.flagged else ""
    point = f"{explanation.population} " if explanation.population else ""
    click.echo(
        f"wrote {output} (model version {explanation.version_id}, P(pneumonia) {explanation.probability:.3f}{flag}, "
        f"{point}threshold {explanation.threshold:.3f})"
    )
