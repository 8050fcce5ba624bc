"""Work whose process died is back in a lease's time: what a worker's main process does besides Celery's work.

Each worker renews, every heartbeat, the rows of the chunks it has received and not started (a screening renews
its own rows), and looks for work whose holder stopped renewing: queued rows, and result objects whose send was
due a lease ago. `screen enqueue --wait`, `screen requeue` and the listener's loop look too; whoever notices
first dispatches it again. The broker's own redelivery (SCREEN_VISIBILITY_TIMEOUT) stays as the last resort.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from screening.db.leases import Holder, beating, overdue_sends, renew_results, reserve_results
from screening.queue.enqueue import dispatch_lapsed
from screening.usecases.context import Services
from screening.usecases.enqueue import dispatcher
from screening.usecases.outbox import dispatch_send

__all__ = ["Holder", "Recovered", "keeping", "recover_stranded", "reserve_chunk", "worker_holder"]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    images: int  # queued rows dispatched again
    sends: int  # result objects dispatched again


def worker_holder(services: Services, node: str) -> Holder:
    """The holder a worker's rows are leased to: its node name and main process, the same in every pool child."""
    return Holder.this_process(services.settings.work_lease, node)


def recover_stranded(services: Services) -> Recovered:
    """One look for work whose holder stopped renewing; dispatch it again."""
    settings = services.settings
    images = len(dispatch_lapsed(services.sessions, dispatcher(services), settings.chunk_size))
    sends = 0
    if settings.distributed:  # without a broker the listener's loop sends whatever is due anyway
        with services.sessions.begin() as session:
            overdue = overdue_sends(session, timedelta(seconds=settings.work_lease.lease_s))
        for object_id in overdue:
            dispatch_send(object_id)
        sends = len(overdue)
    if images or sends:
        logger.warning("took over %d image(s) and %d send(s) whose process stopped renewing its lease", images, sends)
    return Recovered(images, sends)


def reserve_chunk(services: Services, worker: Holder, result_ids: list[int]) -> None:
    """A chunk's message reached this worker: hold its rows until a pool process takes them. Never raises (it runs
    in Celery's consumer): rows it could not reserve are taken when the chunk starts, if nobody else holds them."""
    try:
        with services.sessions.begin() as session:
            reserve_results(session, result_ids, worker)
    except Exception as error:
        logger.warning("could not reserve a received chunk (%s): it is taken when it starts", type(error).__name__)


@contextmanager
def keeping(services: Services, worker: Holder) -> Iterator[None]:
    """While a worker runs: every heartbeat, renew what it reserved and take over what others stranded."""

    def beat() -> None:
        with services.sessions.begin() as session:
            renew_results(session, worker)
        recover_stranded(services)

    with beating(worker.heartbeat_s, beat, name="work-lease-keeper"):
        yield
