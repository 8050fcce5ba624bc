"""The JSON API for tools (`Authorization: Bearer $SCREEN_WEB_TOKEN`), its answers typed by response models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fastapi import APIRouter, Depends

from screening.usecases.models import VersionSummary, list_models
from screening.usecases.review import ReviewRow, WorklistFilter, worklist
from screening.vocabulary import ImageStatus, WorklistView
from screening.web.dependencies import PageNumber, ServicesDep, api_client

router = APIRouter(prefix="/api", dependencies=[Depends(api_client)])


@dataclass(frozen=True)
class WorklistAnswer:
    total: int  # images the filter selects in all
    page: int
    pages: int
    rows: list[ReviewRow]


@router.get("/worklist", response_model=WorklistAnswer)
def worklist_api(
    services: ServicesDep,
    batch: str | None = None,
    day: date | None = None,
    status: ImageStatus | None = None,
    view: WorklistView | None = None,
    page_number: PageNumber = 1,
) -> WorklistAnswer:
    found = worklist(services, WorklistFilter(batch or None, day, status, view), page_number)
    return WorklistAnswer(found.total, found.page, found.pages, found.rows)


@router.get("/models", response_model=list[VersionSummary])
def models_api(services: ServicesDep) -> list[VersionSummary]:
    return list_models(services)
