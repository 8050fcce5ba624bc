"""The model versions and each one's card."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from markupsafe import Markup

from screening.usecases.models import list_models, model_card
from screening.web.dependencies import Browser, ResultId, ServicesDep, page

router = APIRouter(prefix="/models")
# CommonMark with tables and without raw HTML: a manifest's text is shown as text, never as markup
CARD_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


@router.get("", response_class=HTMLResponse)
def models_page(request: Request, session_id: Browser, services: ServicesDep) -> HTMLResponse:
    return page(request, "models.html", session_id, versions=list_models(services))


@router.get("/{version_id}", response_class=HTMLResponse)
def model_card_page(request: Request, version_id: ResultId, session_id: Browser, services: ServicesDep) -> HTMLResponse:
    """A version's model card, made from its artifact: the figures per source and population."""
    card = CARD_MARKDOWN.render(model_card(services, version_id))
    return page(request, "card.html", session_id, card=Markup(card), version_id=version_id)
