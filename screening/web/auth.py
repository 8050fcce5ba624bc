"""Sign-in for the review app: API clients send `Authorization: Bearer $SCREEN_WEB_TOKEN`; a browser signs in with
that token once and gets an HttpOnly, SameSite=Strict session cookie. Every form that changes something carries
the session's CSRF token, so another site cannot post in a signed-in radiologist's name."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

SESSION_COOKIE = "screen_session"


@dataclass
class Sessions:
    """Browser sessions of this server process (a restart signs everyone out): session id -> CSRF token."""

    token: str
    _csrf: dict[str, str] = field(default_factory=dict)

    def token_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def open(self) -> str:
        session_id = secrets.token_urlsafe(32)
        self._csrf[session_id] = secrets.token_urlsafe(32)
        return session_id

    def close(self, session_id: str | None) -> None:
        self._csrf.pop(session_id or "", None)

    def csrf_of(self, session_id: str | None) -> str | None:
        return self._csrf.get(session_id or "")

    def csrf_matches(self, session_id: str | None, offered: str | None) -> bool:
        expected = self.csrf_of(session_id)
        return expected is not None and offered is not None and hmac.compare_digest(expected, offered)
