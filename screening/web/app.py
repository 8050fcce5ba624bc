"""The review app: worklist, image page (model view, heatmap, verdict), model versions, and a JSON API, one router
per resource (screening.web.routes) over dependencies a test may override (screening.web.dependencies)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from screening.errors import ScreeningError
from screening.usecases.context import Services
from screening.usecases.review import keep_heatmaps_ready
from screening.web.auth import BrowserSessions
from screening.web.dependencies import HERE, VIEWER, SignInRequired
from screening.web.routes import api, images, models, signin, worklist

PROTECTIVE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(services: Services, token: str) -> FastAPI:
    @asynccontextmanager
    async def heatmaps_ahead(_: FastAPI) -> AsyncIterator[None]:
        """While the app serves, a thread makes the heatmaps of flagged unread images before they are opened."""
        stop = threading.Event()
        ahead = threading.Thread(target=keep_heatmaps_ready, args=(services, stop), name="heatmaps", daemon=True)
        ahead.start()
        yield
        stop.set()
        ahead.join(60)  # the heatmap in hand is finished, not cut off by the interpreter's exit

    app = FastAPI(
        title="Chest X-ray screening review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=heatmaps_ahead
    )
    app.state.services = services
    app.state.sessions = BrowserSessions(token, services.settings.web.session_idle_s)
    if VIEWER.is_dir():  # OpenSeadragon, as `make` installs it (npm ci in screening/web/viewer)
        app.mount("/static/viewer", StaticFiles(directory=VIEWER), name="viewer")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (signin.router, worklist.router, images.router, models.router, api.router):
        app.include_router(router)

    @app.middleware("http")
    async def protective_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Never framed by another page (a click there would record a verdict), never sniffed as another type,
        and nothing but the static files kept in a cache: every page and image is about a patient."""
        response = await call_next(request)
        response.headers.update(PROTECTIVE_HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(ScreeningError)
    async def as_refusal(request: Request, problem: ScreeningError) -> Response:
        """The error's category says the status: not found 404, invalid 422, unavailable 503, refused 409."""
        return JSONResponse({"detail": str(problem)}, status_code=problem.http_status)

    return app
