"""Sign-in for the review app: API clients send `Authorization: Bearer $SCREEN_WEB_TOKEN`; a browser signs in with
that token once and gets an HttpOnly, SameSite=Strict session cookie (Secure with SCREEN_WEB_SECURE_COOKIE) that
lapses after SCREEN_WEB_SESSION_IDLE_SECONDS without a request. Every form that changes something carries the
session's CSRF token, so another site cannot post in a signed-in radiologist's name. Wrong tokens are logged (the
client's address, never what it offered) and, after a few in a minute, that address is refused for the minute."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

SESSION_COOKIE = "screen_session"
FAILURES_ALLOWED, FAILURE_WINDOW_S = 5, 60.0
logger = logging.getLogger(__name__)


@dataclass
class BrowserSession:
    csrf: str
    last_seen: float


@dataclass
class Sessions:
    """Browser sessions of this server process (a restart signs everyone out), and failed sign-ins by address."""

    token: str
    idle_s: float
    clock: Callable[[], float] = time.monotonic
    _open: dict[str, BrowserSession] = field(default_factory=dict)
    _failures: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def token_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def blocked(self, client: str) -> bool:
        """Too many wrong tokens from this address within the last minute."""
        recent = self._failures[client]
        while recent and recent[0] < self.clock() - FAILURE_WINDOW_S:
            recent.popleft()
        return len(recent) >= FAILURES_ALLOWED

    def failed(self, client: str, how: str) -> None:
        self._failures[client].append(self.clock())
        logger.warning(
            "%s with a wrong token from %s (%d in the last minute)", how, client, len(self._failures[client])
        )

    def open(self) -> str:
        session_id = secrets.token_urlsafe(32)
        self._open[session_id] = BrowserSession(secrets.token_urlsafe(32), self.clock())
        return session_id

    def close(self, session_id: str | None) -> None:
        self._open.pop(session_id or "", None)

    def csrf_of(self, session_id: str | None) -> str | None:
        """The session's CSRF token while it is open; a request keeps it open, `idle_s` without one closes it."""
        session = self._open.get(session_id or "")
        if session is None:
            return None
        if self.clock() - session.last_seen > self.idle_s:
            self.close(session_id)
            return None
        session.last_seen = self.clock()
        return session.csrf

    def csrf_matches(self, session_id: str | None, offered: str | None) -> bool:
        expected = self.csrf_of(session_id)
        return expected is not None and offered is not None and hmac.compare_digest(expected, offered)
