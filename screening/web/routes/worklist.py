"""The worklist (the images a filter selects, a page at a time, with their studies) and the batches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from screening.usecases.results import recent_batches
from screening.usecases.review import WorklistFilter, worklist
from screening.vocabulary import ImageStatus, WorklistView
from screening.web.dependencies import Browser, PageNumber, ServicesDep, page

router = APIRouter()
Field = TypeVar("Field")


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


@router.get("/", response_class=HTMLResponse)
def worklist_page(
    request: Request,
    session_id: Browser,
    services: ServicesDep,
    batch: str = "",
    day: str = "",
    status: str = "",
    view: str = "",
    page_number: PageNumber = 1,
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
        hide_identifiers=services.settings.web.hide_identifiers,
        filters=filters,
        problems=problems,
        statuses=list(ImageStatus),
        views=list(WorklistView),
    )


@router.get("/batches", response_class=HTMLResponse)
def batches_page(request: Request, session_id: Browser, services: ServicesDep) -> HTMLResponse:
    return page(request, "batches.html", session_id, lines=recent_batches(services, 100))
