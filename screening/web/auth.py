"""Sign-in for the review app: API clients send `Authorization: Bearer $SCREEN_WEB_TOKEN`; a browser signs in with
that token and the reader's name once (every reading it records carries the name) and gets an HttpOnly,
SameSite=Strict session cookie (Secure with SCREEN_WEB_SECURE_COOKIE) that lapses after
SCREEN_WEB_SESSION_IDLE_SECONDS without a request. Every form that changes something carries the session's CSRF
token, so another site cannot post in a signed-in radiologist's name. Wrong tokens are logged (the client's
address, never what it offered) and, after a few in a minute, that address is refused for the minute.

A name per session under the one administrator's token, not accounts with passwords: the product holds no
secrets of readers to keep, hash or reset, and a hospital's reading room signs in at shared workstations; what
an audit needs (who read which film, when, and what changed) is kept with every reading."""

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


READER_NAME_LENGTH = 64


@dataclass
class BrowserSession:
    csrf: str
    reader: str
    last_seen: float


def reader_name(offered: str) -> str | None:
    """A reader's name as typed at sign-in, or None when it cannot be one: empty, longer than 64 characters, or
    holding control or formatting characters (a right-to-left override would make a name read as another)."""
    name = " ".join(offered.split())
    return name if 0 < len(name) <= READER_NAME_LENGTH and name.isprintable() else None


@dataclass
class BrowserSessions:
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

    def open(self, reader: str) -> str:
        session_id = secrets.token_urlsafe(32)
        self._open[session_id] = BrowserSession(secrets.token_urlsafe(32), reader, self.clock())
        return session_id

    def reader_of(self, session_id: str) -> str:
        """The name the session's reader signed in with (of an open session: `csrf_of` said so)."""
        return self._open[session_id].reader

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
