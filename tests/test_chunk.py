"""screen_chunk, the function behind the Celery task, called directly: no broker needed."""

import shutil
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import DICOM, FULLRES, REPOSITORY

from screening.config import load_settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.migrate import upgrade
from screening.db.schema import Result
from screening.model.released import ensure_active_model
from screening.queue.enqueue import enqueue_batch, start_batch
from screening.worker.chunk import WorkerRuntime, screen_chunk


@pytest.fixture
def runtime(database_url, monkeypatch):
    monkeypatch.setenv("SCREEN_DATABASE_URL", database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        ensure_active_model(session, REPOSITORY / "models")
    yield WorkerRuntime(load_settings(), sessions)
    engine.dispose()


def queued_ids(runtime, folder) -> list[int]:
    chunks = []
    batch = start_batch(runtime.session_factory, [str(folder)], "in-process")
    enqueue_batch(runtime.session_factory, batch, [str(folder)], 64, chunks.append, timedelta(hours=1))
    return [result_id for chunk in chunks for result_id in chunk]


def test_bad_files_do_not_stop_the_good_ones_and_redelivery_adds_nothing(runtime, tmp_path):
    tmp_path = tmp_path / "night"
    tmp_path.mkdir()
    good = sorted((FULLRES / "val").iterdir())[:3]
    for path in good:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "empty.jpeg").write_bytes(b"")
    (tmp_path / "half.jpeg").write_bytes(good[0].read_bytes()[: good[0].stat().st_size // 2])
    (tmp_path / "random.dcm").write_bytes(bytes(range(256)) * 20)
    shutil.copy(DICOM / "multiframe_2frame.dcm", tmp_path / "us.dcm")
    shutil.copy(good[1], tmp_path / "identical-copy.jpeg")  # same bytes as a good file: screened once

    result_ids = queued_ids(runtime, tmp_path)
    assert len(result_ids) == 7  # eight files, two of them identical
    summary = screen_chunk(runtime, result_ids)
    assert summary.statuses == {"done": 3, "failed": 2, "skipped": 2}
    with runtime.session_factory() as session:
        reasons = dict(session.execute(sa.select(Result.path, Result.reason)).all())
        assert session.scalar(sa.select(sa.func.count()).select_from(Result)) == 7
    by_name = {path.rsplit("/", 1)[1]: reason for path, reason in reasons.items()}
    assert by_name["empty.jpeg"] == "empty file"
    assert by_name["half.jpeg"].startswith("truncated JPEG")
    assert by_name["random.dcm"] == "not a JPEG, PNG or DICOM file"
    assert by_name["us.dcm"].startswith("modality US")

    again = screen_chunk(runtime, result_ids)  # a redelivered task
    assert again.already_screened == 7 and again.statuses == {}
    with runtime.session_factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Result)) == 7
