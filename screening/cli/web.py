"""serve: the review app for radiologists."""

from __future__ import annotations

import os
import socket

import click

from screening.cli.context import AppContext, pass_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless set.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="HTTP port.")
@pass_app
def serve(app: AppContext, host: str, port: int) -> None:
    """The review app: worklist (flagged first), each image with its heatmap and sends, radiologists' verdicts,
    model versions. Needs SCREEN_WEB_TOKEN: browsers sign in with it, API clients send it as a Bearer token."""
    token, problem = app.settings.web.token, app.settings.web.token_problem
    if token is None or problem:
        raise click.ClickException(problem or "no SCREEN_WEB_TOKEN")
    _check_free(host, port)
    import uvicorn

    from screening.web.app import create_app

    uvicorn.run(create_app(app.services, token), host=host, port=port, log_level="info", server_header=False)


def _check_free(host: str, port: int) -> None:
    """One line, before the app loads, when another process holds the address (uvicorn would log and exit 3)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as problem:
        reason = os.strerror(problem.errno) if problem.errno else type(problem).__name__
        raise click.ClickException(f"cannot serve on {host}:{port} ({reason}): use --port") from None
