"""Leases on work in flight, so that the work of a process that died is back in a lease's time, not the broker's hour.

A worker reserves a chunk's queued rows when its message arrives and takes them (with a token of its own) when it
starts screening; it renews both while it lives. Rows whose lease lapsed belong to a process that stopped renewing:
whoever notices first takes them over and dispatches them again. A row held under a live lease is never taken, so a
slow chunk delivered twice is screened once. A result object being sent is held the same way, one attempt at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from screening.config import WorkLease
from screening.db.outbox import to_try
from screening.db.schema import OutboxObject, Result, utcnow
from screening.vocabulary import ImageStatus, SendStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """A process that holds work: its name (node and pid, never patient data), how long its claims last, and how
    often it renews them."""

    name: str
    lease: timedelta
    heartbeat_s: float

    @classmethod
    def this_process(cls, terms: WorkLease, node: str | None = None) -> Holder:
        return cls(
            f"{node or socket.gethostname()} pid {os.getpid()}", timedelta(seconds=terms.lease_s), terms.heartbeat_s
        )


def _unheld(lease_expires_at: InstrumentedAttribute, now: datetime) -> ColumnElement[bool]:
    """Held by nobody: never leased, or leased by a process that stopped renewing."""
    return or_(lease_expires_at.is_(None), lease_expires_at < now)


def _claimable(holder: Holder, now: datetime) -> ColumnElement[bool]:
    """A queued row this holder may claim: held by nobody, or reserved by this holder and not started."""
    reserved_here = and_(Result.lease_holder == holder.name, Result.lease_token.is_(None))
    return and_(Result.status == ImageStatus.QUEUED, or_(_unheld(Result.lease_expires_at, now), reserved_here))


def _claim_values(holder: Holder, token: str | None, now: datetime) -> dict:
    """A new lease; where it replaces one that lapsed, whose it was and when it was taken over."""
    lapsed = and_(Result.lease_expires_at < now, Result.lease_holder != holder.name)
    return {
        "lease_holder": holder.name,
        "lease_token": token,
        "lease_expires_at": now + holder.lease,
        "lapsed_holder": case((lapsed, Result.lease_holder), else_=Result.lapsed_holder),
        "taken_over_at": case((lapsed, now), else_=Result.taken_over_at),
    }


def reserve_results(session: Session, result_ids: list[int], holder: Holder) -> int:
    """A chunk's message arrived: hold its queued rows that nobody else holds; returns how many."""
    now = utcnow()
    statement = (
        update(Result)
        .where(Result.id.in_(result_ids), _claimable(holder, now))
        .values(_claim_values(holder, None, now))
        .execution_options(synchronize_session=False)
    )
    return len(list(session.scalars(statement.returning(Result.id))))


def take_results(session: Session, result_ids: list[int], holder: Holder, token: str) -> list[int]:
    """Start screening: the queued rows that are free or reserved by this holder, now under `token`."""
    now = utcnow()
    statement = (
        update(Result)
        .where(Result.id.in_(result_ids), _claimable(holder, now))
        .values({**_claim_values(holder, token, now), "screenings": Result.screenings + 1})
        .returning(Result.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))


def renew_results(session: Session, holder: Holder, token: str | None = None) -> None:
    """Still alive: the rows this screening holds (`token`), or those the holder reserved and has not started."""
    held = Result.lease_token == token if token else Result.lease_token.is_(None)
    session.execute(
        update(Result)
        .where(Result.lease_holder == holder.name, held, Result.status == ImageStatus.QUEUED)
        .values(lease_expires_at=utcnow() + holder.lease)
        .execution_options(synchronize_session=False)
    )


def release_results(session: Session, token: str) -> None:
    """A screening that stopped without outcomes (a database error it will retry): its rows are free again."""
    session.execute(
        update(Result)
        .where(Result.lease_token == token, Result.status == ImageStatus.QUEUED)
        .values(lease_holder=None, lease_token=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def lapsed_results(session: Session) -> dict[int, list[int]]:
    """Queued rows whose holder stopped renewing, by model version (a chunk is screened by one version)."""
    rows = session.execute(
        select(Result.model_version_id, Result.id)
        .where(Result.status == ImageStatus.QUEUED, Result.lease_expires_at < utcnow())
        .order_by(Result.id)
    )
    by_version: dict[int, list[int]] = {}
    for version_id, result_id in rows:
        by_version.setdefault(version_id, []).append(result_id)
    return by_version


def mark_taken_over(session: Session, result_ids: list[int]) -> None:
    """These lapsed rows were dispatched again: free, with whose lease lapsed and when. A row some worker claimed
    meanwhile (the new message was quick) keeps its new lease."""
    now = utcnow()
    session.execute(
        update(Result)
        .where(Result.id.in_(result_ids), Result.status == ImageStatus.QUEUED, Result.lease_expires_at < now)
        .values(
            lapsed_holder=Result.lease_holder,
            taken_over_at=now,
            lease_holder=None,
            lease_token=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class StrandedWork:
    """Images of a batch whose holder stopped renewing: waiting since its lease lapsed, or taken over."""

    holder: str
    images: int
    lapsed_at: datetime | None = None  # not taken over yet: when the lease ran out (last renewal + one lease)
    taken_over_at: datetime | None = None  # taken over (the latest time, if several were)


def stranded_work(session: Session, batch_id: str) -> list[StrandedWork]:
    """What `screen status` says of a batch's images held by a process that stopped renewing."""
    now = utcnow()
    waiting = session.execute(
        select(Result.lease_holder, func.count(), func.min(Result.lease_expires_at))
        .where(Result.batch_id == batch_id, Result.status == ImageStatus.QUEUED, Result.lease_expires_at < now)
        .group_by(Result.lease_holder)
    )
    taken = session.execute(
        select(Result.lapsed_holder, func.count(), func.max(Result.taken_over_at))
        .where(Result.batch_id == batch_id, Result.lapsed_holder.is_not(None))
        .group_by(Result.lapsed_holder)
    )
    return [StrandedWork(holder or "?", count, lapsed_at=when) for holder, count, when in waiting] + [
        StrandedWork(holder or "?", count, taken_over_at=when) for holder, count, when in taken
    ]


def take_send(session: Session, object_id: int, holder: Holder) -> bool:
    """Hold a pending result object for one send attempt; False if another process is sending it now."""
    now = utcnow()
    unheld = _unheld(OutboxObject.lease_expires_at, now)
    statement = (
        update(OutboxObject)
        .where(OutboxObject.id == object_id, OutboxObject.status == SendStatus.PENDING, unheld)
        .values(lease_holder=holder.name, lease_expires_at=now + holder.lease)
        .execution_options(synchronize_session=False)
    )
    return session.scalar(statement.returning(OutboxObject.id)) is not None


def renew_send(session: Session, object_id: int, holder: Holder) -> None:
    session.execute(
        update(OutboxObject)
        .where(OutboxObject.id == object_id, OutboxObject.lease_holder == holder.name)
        .values(lease_expires_at=utcnow() + holder.lease)
        .execution_options(synchronize_session=False)
    )


def overdue_sends(session: Session, lease: timedelta) -> list[int]:
    """Pending objects whose attempt was due a lease ago and that nobody is sending: the message that was to send
    them died with a worker (a retry waiting in a worker's memory, say). Each is due again from now on, so it is
    dispatched again once per lease at most."""
    now = utcnow()
    overdue = and_(
        to_try(),
        OutboxObject.next_attempt_at < now - lease,
        _unheld(OutboxObject.lease_expires_at, now),
    )
    return list(
        session.scalars(
            update(OutboxObject)
            .where(overdue)
            .values(next_attempt_at=now)
            .returning(OutboxObject.id)
            .execution_options(synchronize_session=False)
        )
    )


SessionFactory = sessionmaker[Session]


@contextmanager
def beating(every_s: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Run `action` every `every_s` seconds on a thread while the block runs (the block may be a long inference).
    A failed beat (a database or broker blip) is tried again at the next one: a lease is three beats long at least."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                action()
            except Exception:
                logger.warning("%s: a heartbeat failed; the next one tries again", name, exc_info=False)

    keeper = threading.Thread(target=beat, name=name, daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


def renewing(
    sessions: SessionFactory, every_s: float, renew: Callable[[Session], None], name: str
) -> AbstractContextManager[None]:
    """`renew` in a transaction of its own every `every_s` seconds while the block runs."""

    def in_transaction() -> None:
        with sessions.begin() as session:
            renew(session)

    return beating(every_s, in_transaction, name)
