"""listen and outbox: the product as a DICOM node."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

import click

from screening.cli.context import AppContext, pass_app
from screening.cli.tables import add_row, make_table, print_table
from screening.usecases.listen import ListenerOptions
from screening.usecases.listen import listen as run_listener
from screening.usecases.outbox import list_outbox, send_failed_again
from screening.vocabulary import SendStatus


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(1, 65535), help="DICOM port.")
@click.option(
    "--allow",
    multiple=True,
    help="A calling AE title to accept (repeatable; default SCREEN_DICOM_ALLOWED_AES; neither: any).",
)
@pass_app
def listen(app: AppContext, host: str, port: int, allow: tuple[str, ...]) -> None:
    """Receive studies by C-STORE (CR, DX, Secondary Capture), screen each once it settles, and send its
    structured report and heatmaps to SCREEN_RESULTS_DESTINATION. This node's AE title is SCREEN_DICOM_AE_TITLE
    (the workers send results under it too). Stops cleanly on SIGTERM or Ctrl-C."""
    if any(len(title) > 16 for title in allow):
        raise click.BadParameter("AE titles have at most 16 characters")
    stop = threading.Event()
    for sign in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sign, lambda *_: stop.set())
    options = ListenerOptions(host, port, allow)
    run_listener(app.services, options, stop, say=lambda message: click.echo(f"{_now()} {message}", err=True))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@click.option("--resend", "resend_failed", is_flag=True, help="Try the failed sends again (a fresh count of attempts).")
@click.option("--failed", is_flag=True, help="List only the sends that failed.")
@pass_app
def outbox(app: AppContext, resend_failed: bool, failed: bool) -> None:
    """The DICOM results made for screened studies and their sending to SCREEN_RESULTS_DESTINATION."""
    if resend_failed:
        click.echo(f"{len(send_failed_again(app.services))} result object(s) sent again", err=True)
    rows = list_outbox(app.services, (SendStatus.FAILED,) if failed else None)
    columns = ["id", "study", "kind", "status", "attempts", "destination", "last error", "notes"]
    table = make_table(columns, "outbox")
    for row in rows:
        values = [row.id, row.study_uid, row.kind, row.status, row.attempts, row.destination, row.last_error]
        add_row(table, [*values, row.notes])
    print_table(table)
