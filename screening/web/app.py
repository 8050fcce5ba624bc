"""The review app's routes: worklist, image page (model view, heatmap, verdict), model versions, and a JSON API."""

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

from screening.errors import ScreeningError
from screening.text import visible
from screening.usecases.context import Services
from screening.usecases.models import list_models, model_card
from screening.usecases.results import recent_batches
from screening.usecases.review import (
    ImageStatus,
    Truth,
    WorklistFilter,
    WorklistView,
    evidence_png,
    film_png,
    heatmap_png,
    image_row,
    image_view,
    keep_heatmaps_ready,
    model_input_png,
    record_verdict,
    worklist,
)
from screening.web.auth import READER_NAME_LENGTH, SESSION_COOKIE, BrowserSessions, reader_name

Field = TypeVar("Field")
HERE = Path(__file__).parent
VIEWER = HERE / "viewer" / "node_modules" / "openseadragon" / "build" / "openseadragon"
PROTECTIVE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# a row id the databases can hold: a larger one is refused as invalid, not a server error
ResultId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
RecordedId = Annotated[int, Query(ge=1, le=2**63 - 1)]
# CommonMark with tables and without raw HTML: a manifest's text is shown as text, never as markup
CARD_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SignInRequired(Exception):
    """A page asked for without a session: the browser is sent to the sign-in form."""


def worklist_filter(batch: str, day: str, status: str, view: str) -> tuple[WorklistFilter, list[str]]:
    """The worklist form's fields, each optional: an empty one filters nothing, and one that cannot be read is
    left out with a line saying so (never a raw 422 page)."""
    problems: list[str] = []

    def read(text: str, parse: Callable[[str], Field], problem: str) -> Field | None:
        if not text.strip():
            return None
        try:
            return parse(text.strip())
        except ValueError:
            problems.append(problem)
            return None

    chosen = WorklistFilter(
        batch.strip() or None,
        read(day, date.fromisoformat, "the date is not a date (YYYY-MM-DD): not filtered by day"),
        read(status, ImageStatus, "no such status: not filtered by status"),
        read(view, WorklistView, "no such quick filter: left out"),
    )
    return chosen, problems


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
    web = services.settings.web
    sessions = BrowserSessions(token, web.session_idle_s)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["visible"] = visible  # file names: control and bidi characters shown, not obeyed
    if VIEWER.is_dir():  # OpenSeadragon, as `make` installs it (npm ci in screening/web/viewer)
        app.mount("/static/viewer", StaticFiles(directory=VIEWER), name="viewer")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def browser(request: Request) -> str:
        session_id = request.cookies.get(SESSION_COOKIE)
        if sessions.csrf_of(session_id) is None:
            raise SignInRequired
        return str(session_id)

    def unblocked_client(request: Request) -> str:
        """The request's address, unless too many wrong tokens came from it this minute (429)."""
        client = client_address(request)
        if sessions.blocked(client):
            raise HTTPException(429, "too many wrong tokens: wait a minute", {"Retry-After": "60"})
        return client

    def api_client(request: Request) -> None:
        client = unblocked_client(request)
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not sessions.token_matches(offered):
            if offered:
                sessions.failed(client, "an API request")
            raise HTTPException(
                401, "sign in: Authorization: Bearer <SCREEN_WEB_TOKEN>", {"WWW-Authenticate": "Bearer"}
            )

    Browser = Annotated[str, Depends(browser)]

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

    def page(request: Request, name: str, session_id: str, **context: Any) -> HTMLResponse:
        csrf = sessions.csrf_of(session_id)
        return templates.TemplateResponse(request, name, {"csrf": csrf, **context})

    @app.get("/signin", response_class=HTMLResponse)
    def sign_in_form(request: Request, failed: bool = False, unnamed: bool = False) -> HTMLResponse:
        context = {"failed": failed, "unnamed": unnamed, "longest": READER_NAME_LENGTH}
        return templates.TemplateResponse(request, "signin.html", context)

    @app.post("/signin")
    def sign_in(request: Request, token: Annotated[str, Form()] = "", reader: Annotated[str, Form()] = "") -> Response:
        client = unblocked_client(request)
        if not sessions.token_matches(token):
            sessions.failed(client, "a sign-in")
            return RedirectResponse("/signin?failed=1", status_code=303)
        name = reader_name(reader)
        if name is None:
            return RedirectResponse("/signin?unnamed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, sessions.open(name), httponly=True, samesite="strict", secure=web.secure_cookie, path="/"
        )
        return response

    @app.post("/signout")
    def sign_out(request: Request, session_id: Browser, csrf: Annotated[str, Form()] = "") -> Response:
        if not sessions.csrf_matches(session_id, csrf):
            raise HTTPException(403, "cross-site request refused")
        sessions.close(session_id)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def worklist_page(
        request: Request,
        session_id: Browser,
        batch: str = "",
        day: str = "",
        status: str = "",
        view: str = "",
        page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
    ) -> HTMLResponse:
        chosen, problems = worklist_filter(batch, day, status, view)
        found = worklist(services, chosen, page_number)
        filters = {"batch": batch.strip(), "day": day.strip(), "status": status.strip(), "view": view.strip()}
        return page(
            request,
            "worklist.html",
            session_id,
            found=found,
            rows=found.rows,
            studies=found.studies,
            hide_identifiers=web.hide_identifiers,
            filters=filters,
            problems=problems,
            statuses=list(ImageStatus),
            views=list(WorklistView),
        )

    @app.get("/images/{result_id}", response_class=HTMLResponse)
    def image_page(
        request: Request, result_id: ResultId, session_id: Browser, recorded: RecordedId | None = None
    ) -> HTMLResponse:
        """One image; after a reading, the next unread one, saying what was recorded for which."""
        view = image_view(services, result_id)
        done = image_row(services, recorded) if recorded else None
        context = {"view": view, "recorded": done, "truths": list(Truth), "viewer_installed": VIEWER.is_dir()}
        return page(request, "image.html", session_id, **context)

    @app.get("/images/{result_id}/film.png")
    def film(result_id: ResultId, _: Browser, preset: Annotated[int, Query(ge=0, le=1000)] = 0) -> Response:
        return Response(film_png(services, result_id, preset), media_type="image/png")

    @app.get("/images/{result_id}/evidence.png")
    def evidence(result_id: ResultId, _: Browser) -> Response:
        return Response(evidence_png(services, result_id), media_type="image/png")

    @app.get("/images/{result_id}/input.png")
    def model_input(result_id: ResultId, _: Browser) -> Response:
        return Response(model_input_png(services, result_id), media_type="image/png")

    @app.get("/images/{result_id}/heatmap.png")
    def heatmap(result_id: ResultId, _: Browser) -> Response:
        return Response(heatmap_png(services, result_id), media_type="image/png")

    @app.post("/images/{result_id}/verdict")
    def verdict(
        result_id: ResultId, session_id: Browser, truth: Annotated[Truth, Form()], csrf: Annotated[str, Form()] = ""
    ) -> Response:
        if not sessions.csrf_matches(session_id, csrf):
            raise HTTPException(403, "cross-site request refused")
        following = record_verdict(services, result_id, truth, sessions.reader_of(session_id))
        return RedirectResponse(f"/images/{following or result_id}?recorded={result_id}", status_code=303)

    @app.get("/batches", response_class=HTMLResponse)
    def batches_page(request: Request, session_id: Browser) -> HTMLResponse:
        return page(request, "batches.html", session_id, lines=recent_batches(services, 100))

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, session_id: Browser) -> HTMLResponse:
        return page(request, "models.html", session_id, versions=list_models(services))

    @app.get("/models/{version_id}", response_class=HTMLResponse)
    def model_card_page(request: Request, version_id: ResultId, session_id: Browser) -> HTMLResponse:
        """A version's model card, made from its artifact: the figures per source and population."""
        card = CARD_MARKDOWN.render(model_card(services, version_id))
        return page(request, "card.html", session_id, card=Markup(card), version_id=version_id)

    @app.get("/api/worklist", dependencies=[Depends(api_client)])
    def worklist_api(
        batch: str | None = None,
        day: date | None = None,
        status: ImageStatus | None = None,
        view: WorklistView | None = None,
        page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
    ) -> Any:
        found = worklist(services, WorklistFilter(batch or None, day, status, view), page_number)
        return {"total": found.total, "page": found.page, "pages": found.pages, "rows": [asdict(r) for r in found.rows]}

    @app.get("/api/models", dependencies=[Depends(api_client)])
    def models_api() -> Any:
        return [asdict(version) for version in list_models(services)]

    return app
