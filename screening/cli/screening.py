"""enqueue, status, results, preview: the commands a night's screening is run and read with."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import click
import cv2
from kombu.exceptions import OperationalError as KombuOperationalError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from screening.cli.context import AppContext, pass_app
from screening.db.batches import BatchProgress, batch_progress, latest_batch_id
from screening.db.results import batch_rows, study_rows
from screening.db.schema import Batch
from screening.imaging.errors import ImageRejected
from screening.imaging.preprocess import PreprocessSpec, preprocess
from screening.imaging.read import decode_radiograph
from screening.queue.enqueue import enqueue_batch, requeue_batch, start_batch

console = Console(stderr=True)


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
@click.option("--wait", is_flag=True, help="Show progress until every image is screened.")
@pass_app
def enqueue(app: AppContext, paths: tuple[str, ...], wait: bool) -> None:
    """Find radiographs under PATHS and queue them for screening."""
    version = app.active_model()
    distributed = app.settings.distributed
    if not distributed:
        import keras  # this process runs the model: loading a backend here is no waste

        console.print(
            "No broker configured (SCREEN_BROKER_URL unset): screening in this process "
            f"(Keras backend {keras.backend.backend()}).",
            soft_wrap=True,
        )
    roots = [str(Path(p).resolve()) for p in paths]
    batch_id = start_batch(app.session_factory, roots, "celery" if distributed else "in-process")
    click.echo(f"batch {batch_id} (model version {version.id}: {version.name})")
    dispatch = _celery_dispatch() if distributed else _in_process_dispatch(app)
    with _progress() as bar, _broker_errors(batch_id):
        task = bar.add_task("enqueued" if distributed else "screened", total=None)
        enqueue_batch(
            app.session_factory,
            batch_id,
            roots,
            app.settings.chunk_size,
            dispatch,
            stale_after=timedelta(seconds=app.settings.visibility_timeout_s),
            on_files=lambda n: bar.advance(task, n),
        )
    if distributed and wait:
        _wait_for(app, batch_id)
    with app.session_factory() as session:
        click.echo(_summary(batch_progress(session, batch_id)))


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
    """Dispatch again what a batch (default: the latest) claimed and nobody screened, e.g. after a broker loss."""
    if not app.settings.distributed:
        raise click.ClickException("set SCREEN_BROKER_URL: in-process batches never wait on a broker")
    with app.session_factory() as session:
        batch_id = _batch_or_latest(session, batch_id)
    with _broker_errors(batch_id):
        count = requeue_batch(app.session_factory, batch_id, app.settings.chunk_size, _celery_dispatch())
    click.echo(f"batch {batch_id}: {count} images dispatched again")


def _wait_for(app: AppContext, batch_id: str) -> None:
    with _progress() as bar, app.session_factory() as session:
        task = bar.add_task("screened", total=None)
        while True:
            progress = batch_progress(session, batch_id)
            session.expire_all()
            bar.update(task, total=progress.total, completed=progress.total - progress.pending)
            if progress.finished:
                return
            time.sleep(1)


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
    state = "finished" if progress.finished else "in progress"
    click.echo(f"batch {progress.batch_id}: {state}: {_summary(progress)}")


RESULT_COLUMNS = ["path", "status", "probability", "flagged", "reason", "model_version", "already_screened"]


@click.command()
@click.argument("batch_id", required=False)
@click.option("--flagged", is_flag=True, help="Only images flagged for pneumonia.")
@click.option("--studies", is_flag=True, help="One row per DICOM study: highest image probability.")
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@pass_app
def results(app: AppContext, batch_id: str | None, flagged: bool, studies: bool, output: str) -> None:
    """Results of a batch (default: the latest)."""
    with app.session_factory() as session:
        batch_id = _batch_or_latest(session, batch_id)
        batch = session.get_one(Batch, batch_id)
        rows = batch_rows(session, batch_id, flagged_only=flagged)
        if studies:
            rows = study_rows(session, batch.model_version_id, sorted({r["study_uid"] for r in rows if r["study_uid"]}))
            rows = [r for r in rows if r["flagged"] or not flagged]
    columns = list(rows[0]) if studies and rows else RESULT_COLUMNS
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        title = f"batch {batch_id}, model version {batch.model_version_id}"
        Console().print(_study_table(rows, title) if studies else _image_table(rows, batch.roots, title))


def _image_table(rows: list[dict], roots: list[str], title: str) -> Table:
    """For people: each file relative to what was enqueued, its call, and why when there is no score."""
    base = os.path.commonpath(roots) if len(roots) > 1 else roots[0]
    base = base if os.path.isdir(base) else os.path.dirname(base)
    table = Table(
        Column("file", overflow="fold"), "status", "P(pneumonia)", "flag", Column("note", overflow="fold"), title=title
    )
    for row in rows:
        probability = "" if row["probability"] is None else f"{row['probability']:.3f}"
        note = row["reason"] or ("already screened" if row["already_screened"] else "")
        table.add_row(
            os.path.relpath(row["path"], base), row["status"], probability, "FLAG" if row["flagged"] else "", note
        )
    return table


def _study_table(rows: list[dict], title: str) -> Table:
    table = Table(Column("study", overflow="fold"), "images", "P(pneumonia)", "flag", title=title)
    for row in rows:
        table.add_row(
            row["study_uid"], str(row["images_screened"]), f"{row['probability']:.3f}", "FLAG" if row["flagged"] else ""
        )
    return table


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@pass_app
def preview(app: AppContext, file: str, output: str) -> None:
    """Write the exact 224x224 image the active model sees for FILE (before ImageNet normalisation)."""
    spec = PreprocessSpec.from_dict(app.active_model().preprocessing)
    try:
        image = preprocess(decode_radiograph(Path(file).read_bytes(), app.settings.max_image_pixels).pixels, spec)
    except ImageRejected as problem:
        raise click.ClickException(f"{problem.status}: {problem.reason}") from None
    cv2.imwrite(output, image)
    click.echo(f"wrote {output} ({spec.name}, {image.shape[1]}x{image.shape[0]})")
