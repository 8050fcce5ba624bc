"""What the review app's routes are given, as FastAPI dependencies (tests may override any): the product's
Services, the browser sessions, the signed-in browser, the API client, and the page renderer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from screening.text import visible
from screening.usecases.context import Services
from screening.web.auth import SESSION_COOKIE, BrowserSessions

HERE = Path(__file__).parent
VIEWER = HERE / "viewer" / "node_modules" / "openseadragon" / "build" / "openseadragon"
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.filters["visible"] = visible  # file names: control and bidi characters shown, not obeyed
# a row id the databases can hold: a larger one is refused as invalid, not a server error
ResultId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
RecordedId = Annotated[int, Query(ge=1, le=2**63 - 1)]
PageNumber = Annotated[int, Query(alias="page", ge=1, le=10**6)]


class SignInRequired(Exception):
    """A page asked for without a session: the browser is sent to the sign-in form."""


def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def sessions(request: Request) -> BrowserSessions:
    open_sessions: BrowserSessions = request.app.state.sessions
    return open_sessions


ServicesDep = Annotated[Services, Depends(services)]
SessionsDep = Annotated[BrowserSessions, Depends(sessions)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def browser(request: Request, open_sessions: SessionsDep) -> str:
    """The signed-in browser's session id; a request without one is sent to the sign-in form."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if open_sessions.csrf_of(session_id) is None:
        raise SignInRequired
    return str(session_id)


def unblocked_client(request: Request, open_sessions: SessionsDep) -> str:
    """The request's address, unless too many wrong tokens came from it this minute (429)."""
    client = client_address(request)
    if open_sessions.blocked(client):
        raise HTTPException(429, "too many wrong tokens: wait a minute", {"Retry-After": "60"})
    return client


Client = Annotated[str, Depends(unblocked_client)]
Browser = Annotated[str, Depends(browser)]


def api_client(request: Request, client: Client, open_sessions: SessionsDep) -> None:
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not open_sessions.token_matches(offered):
        if offered:
            open_sessions.failed(client, "an API request")
        raise HTTPException(401, "sign in: Authorization: Bearer <SCREEN_WEB_TOKEN>", {"WWW-Authenticate": "Bearer"})


def checked_csrf(open_sessions: BrowserSessions, session_id: str, offered: str) -> None:
    """A form that changes something carries the session's CSRF token, or it is refused (403)."""
    if not open_sessions.csrf_matches(session_id, offered):
        raise HTTPException(403, "cross-site request refused")


def page(request: Request, name: str, session_id: str, **context: Any) -> HTMLResponse:
    """A template rendered for a signed-in browser, with the session's CSRF token for its forms."""
    csrf = sessions(request).csrf_of(session_id)
    return TEMPLATES.TemplateResponse(request, name, {"csrf": csrf, **context})
