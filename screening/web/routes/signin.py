"""Signing in (the administrator's token and the reader's name) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from screening.web.auth import READER_NAME_LENGTH, SESSION_COOKIE, reader_name
from screening.web.dependencies import TEMPLATES, Browser, Client, ServicesDep, SessionsDep, checked_csrf

router = APIRouter()


@router.get("/signin", response_class=HTMLResponse)
def sign_in_form(request: Request, failed: bool = False, unnamed: bool = False) -> HTMLResponse:
    context = {"failed": failed, "unnamed": unnamed, "longest": READER_NAME_LENGTH}
    return TEMPLATES.TemplateResponse(request, "signin.html", context)


@router.post("/signin")
def sign_in(
    client: Client,
    open_sessions: SessionsDep,
    services: ServicesDep,
    token: Annotated[str, Form()] = "",
    reader: Annotated[str, Form()] = "",
) -> Response:
    if not open_sessions.token_matches(token):
        open_sessions.failed(client, "a sign-in")
        return RedirectResponse("/signin?failed=1", status_code=303)
    name = reader_name(reader)
    if name is None:
        return RedirectResponse("/signin?unnamed=1", status_code=303)
    response = RedirectResponse("/", status_code=303)
    secure = services.settings.web.secure_cookie
    cookie = open_sessions.open(name)
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="strict", secure=secure, path="/")
    return response


@router.post("/signout")
def sign_out(session_id: Browser, open_sessions: SessionsDep, csrf: Annotated[str, Form()] = "") -> Response:
    checked_csrf(open_sessions, session_id, csrf)
    open_sessions.close(session_id)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
