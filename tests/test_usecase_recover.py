"""Work whose holder died, back in a lease's time: what a worker's keeper and the listener's loop look for.

`usecases/recover.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import dataclasses
from datetime import timedelta

import sqlalchemy as sa
from helpers import queued_ids, wait_until

from screening.db.engine import make_engine, make_session_factory
from screening.db.leases import Holder
from screening.db.schema import Result
from screening.usecases.recover import Recovered, recover_stranded, reserve_chunk, worker_holder


def test_what_a_dead_worker_reserved_is_screened_by_the_next_look_and_a_living_workers_is_left(services, sample_folder):
    dying, living = Holder("dying@host pid 1", timedelta(seconds=1), 0.3), worker_holder(services, "living@host")
    ids = queued_ids(services.sessions, sample_folder / "jpeg")  # as when the worker that received them died
    reserve_chunk(services, dying, ids[:2])
    reserve_chunk(services, living, ids[2:])
    assert recover_stranded(services) == Recovered(0, 0)  # the dying worker's lease still runs

    looks: list[Recovered] = []
    wait_until(lambda: looks.append(recover_stranded(services)) or looks[-1].images > 0, 10, 0.1, "a lapsed lease")
    assert looks[-1] == Recovered(2, 0)  # without a broker, nothing to send: the listener's loop sends what is due
    with services.sessions() as session:
        rows = {row.id: row for row in session.scalars(sa.select(Result).where(Result.id.in_(ids)))}
    assert [(rows[i].status, rows[i].lapsed_holder) for i in ids[:2]] == [("done", dying.name)] * 2
    assert [rows[i].status for i in ids[2:]] == ["queued"] * 2  # the living worker's: still its own
    assert recover_stranded(services) == Recovered(0, 0)  # taken over once


def test_a_chunk_that_cannot_be_reserved_on_receipt_is_left_to_its_start(services, sample_folder, caplog):
    """Reserving runs in Celery's consumer: a database it cannot reach is a warning, never an exception there."""
    gone = make_session_factory(make_engine(f"sqlite:///{sample_folder / 'no-such-folder' / 'screening.db'}"))
    reserve_chunk(dataclasses.replace(services, sessions=gone), worker_holder(services, "w@h"), [1, 2])
    assert "could not reserve a received chunk (OperationalError)" in caplog.text
