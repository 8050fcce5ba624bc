"""One screened image: its page, the film at its resolution and windows, the evidence layer, what the model saw,
its heatmap, and the reader's verdict."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from screening.usecases.review import (
    Truth,
    evidence_png,
    film_png,
    heatmap_png,
    image_row,
    image_view,
    model_input_png,
    record_verdict,
)
from screening.web.dependencies import VIEWER, Browser, RecordedId, ResultId, ServicesDep, SessionsDep, checked_csrf
from screening.web.dependencies import page as render

router = APIRouter(prefix="/images")


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png")


@router.get("/{result_id}", response_class=HTMLResponse)
def image_page(
    request: Request,
    result_id: ResultId,
    session_id: Browser,
    services: ServicesDep,
    recorded: RecordedId | None = None,
) -> HTMLResponse:
    """One image; after a reading, the next unread one, saying what was recorded for which."""
    view = image_view(services, result_id)
    done = image_row(services, recorded) if recorded else None
    context = {"view": view, "recorded": done, "truths": list(Truth), "viewer_installed": VIEWER.is_dir()}
    return render(request, "image.html", session_id, **context)


@router.get("/{result_id}/film.png")
def film(
    result_id: ResultId, _: Browser, services: ServicesDep, preset: Annotated[int, Query(ge=0, le=1000)] = 0
) -> Response:
    return _png(film_png(services, result_id, preset))


@router.get("/{result_id}/evidence.png")
def evidence(result_id: ResultId, _: Browser, services: ServicesDep) -> Response:
    return _png(evidence_png(services, result_id))


@router.get("/{result_id}/input.png")
def model_input(result_id: ResultId, _: Browser, services: ServicesDep) -> Response:
    return _png(model_input_png(services, result_id))


@router.get("/{result_id}/heatmap.png")
def heatmap(result_id: ResultId, _: Browser, services: ServicesDep) -> Response:
    return _png(heatmap_png(services, result_id))


@router.post("/{result_id}/verdict")
def verdict(
    result_id: ResultId,
    session_id: Browser,
    services: ServicesDep,
    open_sessions: SessionsDep,
    truth: Annotated[Truth, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    checked_csrf(open_sessions, session_id, csrf)
    following = record_verdict(services, result_id, truth, open_sessions.reader_of(session_id))
    return RedirectResponse(f"/images/{following or result_id}?recorded={result_id}", status_code=303)
