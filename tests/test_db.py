"""Schema, migrations, the registry, and exactly-once result writes on SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa

from screening.db.batches import add_items, batch_progress, create_batch
from screening.db.engine import make_engine, make_session_factory
from screening.db.migrate import current_revision, head_revision, upgrade
from screening.db.registry import NoActiveModel, active_version, promote, register_version
from screening.db.results import link_items, study_rows, write_results
from screening.db.schema import Result

MANIFEST = {"preprocessing": {"name": "cxr-seed-v1"}, "threshold": 0.5, "metrics": {"validation": {"roc_auc": 0.9}}}


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def register(session, sha="a" * 64):
    return register_version(session, name="test", artifact_path="/x", artifact_sha256=sha, manifest=MANIFEST)


def row(sha, sop=None, study=None, probability=0.7):
    return {
        "sha256": sha,
        "path": f"/n/{sha[:4]}",
        "kind": "dicom" if sop else "jpeg",
        "study_uid": study,
        "series_uid": None,
        "sop_uid": sop,
        "status": "done",
        "reason": None,
        "probability": probability,
        "flagged": probability >= 0.5,
        "read_ms": 1.0,
        "preprocess_ms": 1.0,
        "infer_ms": 1.0,
    }


def test_migrations_reach_head_and_create_the_study_view(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0001"
    names = set(sa.inspect(engine).get_table_names()) | set(sa.inspect(engine).get_view_names())
    assert {"model_versions", "batches", "batch_items", "results", "study_results"} <= names
    engine.dispose()


def test_registry_promotes_one_active_version_at_a_time(sessions):
    with sessions.begin() as session:
        with pytest.raises(NoActiveModel):
            active_version(session)
        first, second = register(session, "a" * 64), register(session, "b" * 64)
        assert register(session, "a" * 64).id == first.id  # same artifact, same version
        promote(session, first.id)
        promote(session, second.id)
        assert active_version(session).id == second.id
        assert session.get(type(first), first.id).status == "retired"


def test_a_result_is_written_once_per_image_and_version(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = create_batch(session, ["/n"], version.id, "in-process")
        for _ in range(3):  # a redelivered chunk, a concurrent batch...
            write_results(session, version.id, batch.id, [row("1" * 64), row("2" * 64, sop="1.2.3")])
        # same SOP instance in different bytes (another transfer syntax) counts as the same image
        write_results(session, version.id, batch.id, [row("3" * 64, sop="1.2.3")])
        assert session.scalar(sa.select(sa.func.count()).select_from(Result)) == 2
        other = register(session, "f" * 64)
        write_results(session, other.id, batch.id, [row("1" * 64)])
        assert session.scalar(sa.select(sa.func.count()).select_from(Result)) == 3


def test_items_link_to_results_and_progress_counts_them(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = create_batch(session, ["/n"], version.id, "in-process")
        items = add_items(
            session,
            batch.id,
            [
                {"path": "/n/a", "sha256": "1" * 64, "kind": "jpeg"},
                {"path": "/n/b", "sha256": "3" * 64, "kind": "dicom", "sop_uid": "1.2.3"},
                {"path": "/n/c", "sha256": "4" * 64, "kind": "jpeg"},
                {"path": "/n/d", "enqueue_error": "cannot read file: Permission denied"},
            ],
        )
        write_results(session, version.id, batch.id, [row("1" * 64), row("2" * 64, sop="1.2.3")])
        waiting = link_items(session, version.id, items[:3])
        assert [item.path for item in waiting] == ["/n/c"]
        progress = batch_progress(session, batch.id)
        assert (progress.total, progress.pending, progress.by_status) == (4, 1, {"done": 2, "failed": 1})


def test_study_score_is_the_highest_image_probability(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = create_batch(session, ["/n"], version.id, "in-process")
        write_results(
            session,
            version.id,
            batch.id,
            [
                row("1" * 64, sop="1.1", study="9.9", probability=0.2),
                row("2" * 64, sop="1.2", study="9.9", probability=0.8),
                row("3" * 64, sop="1.3", study="7.7", probability=0.1),
            ],
        )
        studies = {s["study_uid"]: s for s in study_rows(session, version.id)}
        assert studies["9.9"]["probability"] == pytest.approx(0.8) and studies["9.9"]["flagged"] == 1
        assert studies["9.9"]["images_screened"] == 2
        assert studies["7.7"]["flagged"] == 0
