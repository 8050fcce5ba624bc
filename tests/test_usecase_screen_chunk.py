"""screen_chunk, the function behind the Celery task, called directly: no broker needed."""

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import DICOM, FULLRES, REPOSITORY, queued_ids, scrambled_jpeg, wait_until

from screening.config import WorkLease, load_settings
from screening.db.batches import batch_progress, create_batch
from screening.db.engine import make_engine, make_session_factory
from screening.db.leases import Holder, lapsed_results, overdue_sends, reserve_results, take_results, take_send
from screening.db.migrate import upgrade
from screening.db.outbox import MadeObject, Retries, record_object
from screening.db.schema import ModelVersion, Result
from screening.model.released import ensure_active_model
from screening.queue.enqueue import dispatch_lapsed
from screening.usecases.screen_chunk import WorkerRuntime, screen_chunk
from screening.vocabulary import BatchMode, ResultKind


@pytest.fixture
def runtime(database_url, monkeypatch, release_registry):
    monkeypatch.setenv("SCREEN_DATABASE_URL", database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        ensure_active_model(session, REPOSITORY / "models", release_registry)
    yield WorkerRuntime(load_settings(), sessions, Holder.this_process(WorkLease()))
    engine.dispose()


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

    result_ids = queued_ids(runtime.session_factory, tmp_path)
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


def test_a_jpeg_with_scrambled_data_fails_with_the_decoders_reason(runtime, tmp_path):
    good = sorted((FULLRES / "train" / "NORMAL").iterdir())[0].read_bytes()
    folder = tmp_path / "night"
    folder.mkdir()
    (folder / "scrambled.jpeg").write_bytes(scrambled_jpeg(good))
    summary = screen_chunk(runtime, queued_ids(runtime.session_factory, folder))
    assert summary.statuses == {"failed": 1}
    with runtime.session_factory() as session:
        (reason,) = session.scalars(sa.select(Result.reason))
    assert reason.startswith("corrupt JPEG data: ")


def test_identical_pixels_in_other_bytes_get_the_same_score(runtime, tmp_path):
    import pydicom

    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(DICOM / "cr_chest_pa_monochrome1_jpeg_lossless.dcm", folder / "lossless.dcm")
    uncompressed = pydicom.dcmread(DICOM / "cr_chest_pa_monochrome1_jpeg_lossless.dcm")
    uncompressed.decompress()
    uncompressed.save_as(folder / "uncompressed.dcm")
    jpeg = sorted((FULLRES / "train" / "NORMAL").iterdir())[0].read_bytes()
    (folder / "a.jpeg").write_bytes(jpeg)
    (folder / "b.jpeg").write_bytes(jpeg[:2] + b"\xff\xfe\x00\x07hello" + jpeg[2:])  # a comment: other bytes
    assert screen_chunk(runtime, queued_ids(runtime.session_factory, folder)).statuses == {"done": 4}
    with runtime.session_factory() as session:
        rows = {r.path.rsplit("/", 1)[1]: r for r in session.scalars(sa.select(Result))}
    assert len({rows["lossless.dcm"].sha256, rows["uncompressed.dcm"].sha256}) == 2
    assert rows["lossless.dcm"].pixel_sha256 == rows["uncompressed.dcm"].pixel_sha256
    assert rows["lossless.dcm"].probability == rows["uncompressed.dcm"].probability
    assert rows["a.jpeg"].probability == rows["b.jpeg"].probability
    assert "identical pixels" in (rows["uncompressed.dcm"].reason or rows["lossless.dcm"].reason)


def test_a_model_that_cannot_be_loaded_fails_every_row_with_the_reason(runtime, tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    for source in sorted((FULLRES / "train" / "NORMAL").iterdir())[:2]:
        shutil.copy(source, folder / source.name)
    result_ids = queued_ids(runtime.session_factory, folder)
    with runtime.session_factory.begin() as session:
        version = session.scalars(sa.select(ModelVersion).where(ModelVersion.status == "active")).one()
        version.artifact_sha256 = "0" * 64  # as if the file were changed after registration
    summary = screen_chunk(runtime, result_ids)
    assert summary.statuses == {"failed": 2}
    with runtime.session_factory() as session:
        (reason,) = set(session.scalars(sa.select(Result.reason)))  # one reason, the same for both rows
    assert reason.startswith(f"model version {version.id} could not be loaded: ") and "SHA-256 differs" in reason


def test_rows_under_a_live_lease_are_left_to_their_holder_and_a_lapsed_lease_is_taken_over(runtime, tmp_path):
    """A worker that holds rows (reserved on receipt or being screened) keeps them while it renews; once its lease
    lapses (it died), the rows are dispatched again, screened once more, and say whose lease lapsed."""
    folder = tmp_path / "night"
    folder.mkdir()
    for path in sorted((FULLRES / "val").iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    result_ids = queued_ids(runtime.session_factory, folder)
    dying = Holder("dying@host pid 1", timedelta(seconds=1), 0.3)
    with runtime.session_factory.begin() as session:
        assert reserve_results(session, result_ids[:1], dying) == 1  # a chunk it received and had not started
        assert take_results(session, result_ids[1:], dying, "token") == result_ids[1:]  # one it was screening
    held = screen_chunk(runtime, result_ids)  # the same chunk delivered to this worker meanwhile
    assert held.held_elsewhere == 3 and held.statuses == {}
    with runtime.session_factory.begin() as session:
        assert reserve_results(session, result_ids, runtime.holder) == 0

    def lapsed() -> list[int]:
        with runtime.session_factory() as session:
            return [result_id for ids in lapsed_results(session).values() for result_id in ids]

    wait_until(lambda: lapsed() == result_ids, 10, 0.1, "the dying worker's lease lapsing")
    chunks: list[list[int]] = []
    assert dispatch_lapsed(runtime.session_factory, chunks.append, 2) == result_ids and chunks == [
        result_ids[:2],
        result_ids[2:],
    ]
    assert lapsed() == []  # taken over: not dispatched again by the next look
    for chunk in chunks:
        screen_chunk(runtime, chunk)
    with runtime.session_factory() as session:
        rows = session.execute(sa.select(Result.status, Result.screenings, Result.lapsed_holder).order_by(Result.id))
        assert [tuple(row) for row in rows] == [("done", 1, dying.name)] + [("done", 2, dying.name)] * 2
        batch_id = session.scalar(sa.select(Result.batch_id))
        (stranded,) = batch_progress(session, batch_id).stranded
    assert stranded.holder == dying.name and stranded.images == 3 and stranded.taken_over_at is not None


def test_a_send_is_held_for_one_attempt_and_a_stranded_one_is_dispatched_again_once_per_lease(runtime):
    lease = timedelta(seconds=1)
    dying, other = Holder("dying@host pid 1", lease, 0.3), Holder("other@host pid 2", lease, 0.3)
    with runtime.session_factory.begin() as session:
        version_id = session.scalar(sa.select(ModelVersion.id))
        batch = create_batch(session, [], version_id, BatchMode.CELERY)
        made = MadeObject("1.2.3", ResultKind.REPORT, "", "1.2.3.4", Path("/x.dcm"), [])
        report = record_object(session, batch.id, made, "A@h:1", Retries(3, lease))
        assert take_send(session, report.id, dying) and not take_send(session, report.id, other)
        assert overdue_sends(session, lease) == []  # due now, and held

    def overdue() -> list[int]:
        with runtime.session_factory.begin() as session:
            return overdue_sends(session, lease)

    wait_until(lambda: overdue() == [report.id], 10, 0.1, "the attempt's lease lapsing and the send overdue")
    assert overdue() == []  # due again from now: not dispatched again before another lease has passed
    with runtime.session_factory.begin() as session:
        assert take_send(session, report.id, other)
