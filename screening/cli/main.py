"""`screen`: enqueue folders, run workers, read results, manage models."""

from __future__ import annotations

import logging
import os

import click

from screening.cli.batches import batches, enqueue, explain, preview, requeue_command, results, status
from screening.cli.context import AppContext, make_context, pass_app
from screening.cli.dicom import listen, outbox
from screening.cli.feedback import label, retrain
from screening.cli.models import evaluate, models, train_command, weights
from screening.cli.web import serve
from screening.errors import InvalidRequest, ScreeningError
from screening.usecases.context import active_model, upgrade_database

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ScreenGroup(click.Group):
    """Turns the product's own errors into a one-line message and exit status 1, never a traceback; a malformed
    request is a usage error (2)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InvalidRequest as problem:
            raise click.UsageError(str(problem), ctx) from None
        except ScreeningError as problem:
            raise click.ClickException(str(problem)) from None


@click.group(cls=ScreenGroup)
@click.version_option(package_name="cxr-screening", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log more (never file paths or patient data).")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Chest X-ray pneumonia screening."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    ctx.obj = make_context()


@main.group()
def db() -> None:
    """The results database."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Create or migrate the schema to the newest revision (Alembic)."""
    click.echo(f"database at revision {upgrade_database(app.settings)}")


@main.command()
@click.option("--concurrency", default=1, show_default=True, help="Worker processes (each loads the model once).")
@click.option(
    "--queues", default="screening", show_default=True, help="`screening`, `training` (nightly retrain), or both."
)
@click.option("--loglevel", default="INFO", show_default=True, help="Celery's log level.")
@click.option("--hostname", default=None, help="Celery node name, e.g. worker1@%h.")
@pass_app
def worker(app: AppContext, concurrency: int, loglevel: str, hostname: str | None, queues: str) -> None:
    """Run a Celery worker on SCREEN_BROKER_URL."""
    if not app.settings.distributed:
        raise click.ClickException("set SCREEN_BROKER_URL (e.g. redis://localhost:6379/0) to run a worker")
    active_model(app.services)  # fail now, not on the first task, if there is no model to serve
    from screening.tasks import app as celery

    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        f"--loglevel={loglevel}",
        "--task-events",
        f"--queues={queues}",
    ]
    celery.worker_main(argv + ([f"--hostname={hostname}"] if hostname else []))


@main.command()
@pass_app
def beat(app: AppContext) -> None:
    """Run Celery beat: queues the nightly retrain at SCREEN_RETRAIN_SCHEDULE (cron, default 0 2 * * *)."""
    if not app.settings.distributed:
        raise click.ClickException("set SCREEN_BROKER_URL: beat publishes to the broker")
    from screening.queue.celery_app import app as celery

    app.settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery.start(["beat", f"--schedule={app.settings.data_dir / 'celerybeat-schedule'}"])


@main.command()
@click.option("--port", default=5555, show_default=True, help="Port of the dashboard.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless set.")
@pass_app
def flower(app: AppContext, port: int, address: str) -> None:
    """Open the Flower dashboard on the same broker (same as `celery -A screening.queue.celery_app flower`).

    Beyond loopback it needs FLOWER_BASIC_AUTH=user:password (Flower reads it): a dashboard that can revoke
    tasks is never served to a network without sign-in."""
    if not app.settings.distributed:
        raise click.ClickException("set SCREEN_BROKER_URL: Flower watches the broker")
    if address not in LOOPBACK and ":" not in os.environ.get("FLOWER_BASIC_AUTH", ""):
        raise click.ClickException(f"set FLOWER_BASIC_AUTH=user:password to serve Flower on {address}")
    from screening.queue.celery_app import app as celery

    celery.start(["flower", f"--port={port}", f"--address={address}"])


main.add_command(enqueue)
main.add_command(requeue_command)
main.add_command(status)
main.add_command(batches)
main.add_command(results)
main.add_command(preview)
main.add_command(explain)
main.add_command(listen)
main.add_command(outbox)
main.add_command(serve)
main.add_command(weights)
main.add_command(models)
main.add_command(train_command)
main.add_command(evaluate)
main.add_command(label)
main.add_command(retrain)
