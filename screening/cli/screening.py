"""enqueue, status, results, preview: the commands a night's screening is run and read with."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import click
import cv2
from kombu.exceptions import OperationalError as KombuOperationalError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from screening.cli.context import AppContext, pass_app
from screening.cli.tables import add_row, make_table, print_table
from screening.db.batches import BatchProgress, batch_progress, latest_batch_id, renew_lease
from screening.db.results import STUDY_COLUMNS, batch_rows, batch_studies
from screening.db.schema import Batch, ImageStatus
from screening.imaging.errors import ImageRejected
from screening.imaging.preprocess import PreprocessSpec, preprocess
from screening.imaging.read import decode_radiograph
from screening.queue.enqueue import Dispatch, enqueue_batch, held_lease, requeue_batch, start_batch, wait_for_batch

console = Console(stderr=True)
PREVIEW_FORMATS = (".png", ".jpg", ".jpeg")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _celery_dispatch():  # noqa: ANN202
    from screening.queue.celery_app import SCREEN_CHUNK_TASK, app

    def dispatch(result_ids: list[int]) -> None:
        app.send_task(SCREEN_CHUNK_TASK, args=[result_ids], argsrepr=f"[{len(result_ids)} images]")

    return dispatch


def _in_process_dispatch(app: AppContext):  # noqa: ANN202
    from screening.worker.chunk import WorkerRuntime, screen_chunk

    runtime = WorkerRuntime(app.settings, app.session_factory)
    return lambda result_ids: screen_chunk(runtime, result_ids)


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
@pass_app
def enqueue(app: AppContext, paths: tuple[str, ...], wait: bool) -> None:
    """Find radiographs under PATHS and queue them for screening.

    Exits with status 1 when the batch ended with failed files (`screen results` says why), 0 otherwise."""
    version = app.verified_active_model()
    settings = app.settings
    if not settings.distributed:
        import keras  # this process runs the model: loading a backend here is no waste

        console.print(
            "No broker configured (SCREEN_BROKER_URL unset): screening in this process "
            f"(Keras backend {keras.backend.backend()}).",
            soft_wrap=True,
        )
    roots = [str(Path(p).resolve()) for p in paths]
    lease = timedelta(seconds=settings.enqueue_lease_s)
    batch_id = start_batch(app.session_factory, roots, "celery" if settings.distributed else "in-process", lease)
    click.echo(f"batch {batch_id} (model version {version.id}: {version.name})")
    dispatch = _celery_dispatch() if settings.distributed else _in_process_dispatch(app)
    with held_lease(app.session_factory, batch_id, lease), _broker_errors(batch_id):
        with _progress() as bar:
            task = bar.add_task("enqueued" if settings.distributed else "screened", total=None)
            enqueue_batch(
                app.session_factory,
                batch_id,
                roots,
                settings.chunk_size,
                settings.max_file_bytes,
                dispatch,
                stale_after=timedelta(seconds=settings.visibility_timeout_s),
                on_files=lambda n: bar.advance(task, n),
            )
        if wait or not settings.distributed:
            _wait_for(app, batch_id, dispatch)
    _report_and_exit(app, batch_id)


def _report_and_exit(app: AppContext, batch_id: str) -> None:
    with app.session_factory() as session:
        progress = batch_progress(session, batch_id)
    click.echo(_summary(progress))
    failed = progress.by_status.get(ImageStatus.FAILED, 0)
    if progress.finished and failed:
        click.echo(f"{failed} file(s) failed: `screen results {batch_id}` says why", err=True)
        raise click.exceptions.Exit(1)


@contextmanager
def _broker_errors(batch_id: str) -> Iterator[None]:
    try:
        yield
    except KombuOperationalError as problem:
        raise click.ClickException(
            f"the broker could not be reached ({problem}); batch {batch_id} is recorded: "
            f"run `screen requeue {batch_id}` once the broker is back"
        ) from None


@click.command()
@click.argument("batch_id", required=False)
@pass_app
def requeue(app: AppContext, batch_id: str | None) -> None:
    """Dispatch again what a batch (default: the latest) claimed and nobody screened: after a broker lost its
    queue, or an enqueue that was stopped. Without a broker, screens those images in this process."""
    settings = app.settings
    with app.session_factory() as session:
        batch_id = _batch_or_latest(session, batch_id)
        progress = batch_progress(session, batch_id)
    if not settings.distributed and not (progress.lease_lapsed or progress.enqueue_finished):
        raise click.ClickException(f"batch {batch_id} is still being screened by a running `screen enqueue`")
    app.verified_active_model()
    lease = timedelta(seconds=settings.enqueue_lease_s)
    dispatch = _celery_dispatch() if settings.distributed else _in_process_dispatch(app)
    with app.session_factory.begin() as session:
        renew_lease(session, batch_id, lease)  # this process now answers for the batch's claims
    with held_lease(app.session_factory, batch_id, lease), _broker_errors(batch_id):
        count = requeue_batch(app.session_factory, batch_id, settings.chunk_size, dispatch)
    verb = "dispatched again" if settings.distributed else "screened"
    click.echo(f"batch {batch_id}: {count} images {verb}")


def _wait_for(app: AppContext, batch_id: str, dispatch: Dispatch) -> None:
    with _progress() as bar:
        task = bar.add_task("screened", total=None)
        wait_for_batch(
            app.session_factory,
            batch_id,
            app.settings.chunk_size,
            dispatch,
            on_progress=lambda done, total: bar.update(task, total=total, completed=done),
        )


def _batch_or_latest(session, batch_id: str | None) -> str:  # noqa: ANN001
    batch_id = batch_id or latest_batch_id(session)
    if batch_id is None or session.get(Batch, batch_id) is None:
        raise click.ClickException("no such batch" if batch_id else "no batch yet: run `screen enqueue`")
    return batch_id


@click.command()
@click.argument("batch_id", required=False)
@pass_app
def status(app: AppContext, batch_id: str | None) -> None:
    """Progress of a batch (default: the latest)."""
    with app.session_factory() as session:
        progress = batch_progress(session, _batch_or_latest(session, batch_id))
    click.echo(f"batch {progress.batch_id}: {progress.state}: {_summary(progress)}")


RESULT_COLUMNS = ["path", "status", "probability", "flagged", "reason", "model_version", "already_screened"]
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
    with app.session_factory() as session:
        batch_id = _batch_or_latest(session, batch_id)
        batch = session.get_one(Batch, batch_id)
        rows = batch_studies(session, batch_id) if studies else batch_rows(session, batch_id)
    rows = [row for row in rows if row["flagged"] or not flagged]
    columns = STUDY_COLUMNS if studies else RESULT_COLUMNS
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    else:
        title = f"batch {batch_id}, model version {batch.model_version_id}"
        print_table(_study_table(rows, title) if studies else _image_table(rows, batch.roots, title))


def _image_table(rows: list[dict], roots: list[str], title: str) -> Table:
    """For people: each file relative to what was enqueued, its call, and why when there is no score."""
    base = os.path.commonpath(roots) if len(roots) > 1 else roots[0]
    base = base if os.path.isdir(base) else os.path.dirname(base)
    table = make_table(["file", "status", "P(pneumonia)", "flag", "note"], title)
    for row in rows:
        probability = "" if row["probability"] is None else f"{row['probability']:.3f}"
        note = row["reason"] or ("already screened" if row["already_screened"] else "")
        add_row(table, [os.path.relpath(row["path"], base), row["status"], probability, _flag(row), note])
    return table


def _flag(row: dict) -> str:
    return "FLAG" if row["flagged"] else ""


def _study_table(rows: list[dict], title: str) -> Table:
    table = make_table(["study", "images", "screened", "P(pneumonia)", "flag", "note"], title)
    for row in rows:
        probability = "" if row["probability"] is None else f"{row['probability']:.3f}"
        add_row(table, [row["study_uid"], row["images"], row["images_screened"], probability, _flag(row), row["note"]])
    return table


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Image to write: a .png (or .jpg) path."
)
@pass_app
def preview(app: AppContext, file: str, output: str) -> None:
    """Write the exact 224x224 image the active model sees for FILE (before ImageNet normalisation)."""
    target = Path(output)
    if target.suffix.lower() not in PREVIEW_FORMATS:
        raise click.BadParameter(f"{output} must end in {' or '.join(PREVIEW_FORMATS)}", param_hint="-o")
    if not target.parent.is_dir():
        raise click.BadParameter(f"folder {target.parent} does not exist", param_hint="-o")
    spec = PreprocessSpec.from_dict(app.active_model().preprocessing)
    try:
        image = preprocess(decode_radiograph(Path(file).read_bytes(), app.settings.max_image_pixels).pixels, spec)
    except ImageRejected as problem:
        raise click.ClickException(f"{problem.status}: {problem.reason}") from None
    if not cv2.imwrite(str(target), image):
        raise click.ClickException(f"could not write {output}")
    click.echo(f"wrote {output} ({spec.name}, {image.shape[1]}x{image.shape[0]})")
