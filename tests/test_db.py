"""Schema, migrations, the registry, and exactly-once result rows on SQLite and PostgreSQL."""

import random
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from helpers import REPOSITORY

from screening.db.batches import add_items, batch_progress, create_batch
from screening.db.engine import make_engine, make_session_factory
from screening.db.leases import Holder, take_results
from screening.db.migrate import current_revision, head_revision, upgrade
from screening.db.registry import NoActiveModel, RegistryError, active_version, promote, register_version, rollback
from screening.db.results import (
    Outcome,
    adopt_abandoned,
    batch_studies,
    claim_images,
    instances_of_studies,
    link_items,
    mark_dispatched,
    record_outcomes,
    study_images,
    study_rows,
)
from screening.db.schema import ModelActivation, ModelVersion, Result
from screening.model.released import RELEASES, ensure_active_model
from screening.usecases.results import study_note
from screening.vocabulary import BatchMode, ImageStatus

MANIFEST = {
    "name": "test",
    "preprocessing": {"name": "cxr-seed-v1"},
    "threshold": 0.5,
    "metrics": {"validation": {"roc_auc": 0.9}},
    "training_config": {},
    "data_manifest": {},
}
AN_HOUR = timedelta(hours=1)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def register(session, sha="a" * 64):
    return register_version(session, MANIFEST, "/x", sha)


def new_batch(session, version):
    return create_batch(session, ["/n"], version.id, BatchMode.IN_PROCESS).id


def items(session, batch_id, *specs):
    """specs: (sha256, sop_uid, study_uid)."""
    rows = [
        {"path": f"/n/{i}", "sha256": sha, "kind": "dicom", "sop_uid": sop, "study_uid": study}
        for i, (sha, sop, study) in enumerate(specs)
    ]
    return add_items(session, batch_id, rows)


def outcome(result_id, probability, status="done", reason=None):
    scored = status == "done"
    return Outcome(
        result_id,
        ImageStatus(status),
        reason=reason,
        probability=probability if scored else None,
        flagged=probability >= 0.5 if scored else None,
        kind="dicom",
    )


def count(session):
    return session.scalar(sa.select(sa.func.count()).select_from(Result))


def test_migrations_reach_head_and_create_the_study_view(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision() is not None
    names = set(sa.inspect(engine).get_table_names()) | set(sa.inspect(engine).get_view_names())
    assert {"model_versions", "batches", "batch_items", "results", "study_instances", "study_results"} <= names
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
        assert rollback(session).id == first.id and active_version(session).id == first.id
        assert session.get(type(second), second.id).status == "retired"
        with pytest.raises(RegistryError, match="no model version 99"):
            promote(session, 99)


def test_rollback_walks_back_through_the_activation_history(sessions):
    with sessions.begin() as session:
        first, second, third = (register(session, c * 64) for c in "abc")
        for version in (first, second, third):
            promote(session, version.id)
        assert rollback(session).id == second.id
        assert rollback(session).id == first.id  # further back, never forth to the version just rolled back
        with pytest.raises(RegistryError, match="no earlier active version"):
            rollback(session)
        assert active_version(session).id == first.id
        promote(session, third.id)
        assert rollback(session).id == first.id


def test_concurrent_promotions_and_rollbacks_leave_exactly_one_active_version_and_a_true_history(sessions):
    with sessions.begin() as session:
        ids = [register(session, c * 64).id for c in "abcd"]
        promote(session, ids[0])
    choose, failures = random.Random(0), []

    def change(action) -> None:
        try:
            with sessions.begin() as session:
                action(session)
        except RegistryError:
            pass  # nothing earlier to roll back to: said, not a failure
        except Exception as error:  # a lost race: an integrity error, a lock that could not be taken
            failures.append(error)

    for _ in range(20):
        target = choose.choice(ids)
        pair = [
            threading.Thread(target=change, args=(lambda session, target=target: promote(session, target),)),
            threading.Thread(target=change, args=(rollback,)),
        ]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join()
        with sessions() as session:
            (active,) = session.scalars(sa.select(ModelVersion).where(ModelVersion.status == "active"))
            newest_standing = session.scalars(
                sa.select(ModelActivation)
                .where(ModelActivation.rolled_back_at.is_(None))
                .order_by(ModelActivation.id.desc())
            ).first()
            assert newest_standing.model_version_id == active.id
    assert failures == []


def test_a_registry_with_versions_and_none_active_says_so_and_activates_nothing(sessions, tmp_path):
    with sessions.begin() as session:
        register(session)
        with pytest.raises(NoActiveModel, match="no model version is active, of the 1 registered"):
            ensure_active_model(session, REPOSITORY / "models", tmp_path / "registry")
        assert len(session.scalars(sa.select(ModelVersion)).all()) == 1


def test_an_image_is_claimed_once_per_version(sessions):
    with sessions.begin() as session:
        version = register(session)
        first, second = new_batch(session, version), new_batch(session, version)
        found = items(session, first, ("1" * 64, None, None), ("2" * 64, None, None), ("1" * 64, None, None))
        assert len(claim_images(session, version.id, first, found, AN_HOUR)) == 2  # identical files once
        again = items(session, second, ("1" * 64, None, None), ("2" * 64, None, None))
        assert claim_images(session, version.id, second, again, AN_HOUR) == []  # claimed by the first batch
        link_items(session, version.id, found + again)
        assert count(session) == 2 and len({item.result_id for item in found + again}) == 2
        other = register(session, "f" * 64)  # a new version screens everything again
        assert len(claim_images(session, other.id, second, again, AN_HOUR)) == 2


def test_one_instance_in_two_encodings_counts_once_in_its_study(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        found = items(session, batch, ("1" * 64, "1.2.3", "9.9"), ("2" * 64, "1.2.3", "9.9"))
        first, second = claim_images(session, version.id, batch, found, AN_HOUR)  # each encoding its own row
        record_outcomes(session, [outcome(first, 0.7), outcome(second, 0.7)])
        (study,) = study_rows(session, version.id)
        assert (study.images, study.images_screened, study.probability) == (1, 1, pytest.approx(0.7))


def test_a_resent_instance_with_other_pixels_is_scored_and_the_study_reports_it(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        (older,) = claim_images(session, version.id, batch, items(session, batch, ("1" * 64, "1.2.3", "9.9")), AN_HOUR)
        record_outcomes(session, [outcome(older, 0.998)])
        newer_items = items(session, batch, ("2" * 64, "1.2.3", "9.9"))
        (newer,) = claim_images(session, version.id, batch, newer_items, AN_HOUR)  # same UID, other bytes: scored
        record_outcomes(session, [outcome(newer, 0.014)])
        (study,) = study_rows(session, version.id)
        assert study.probability == pytest.approx(0.014) and not study.flagged and study.images == 1


def test_a_broken_copy_of_an_instance_does_not_stand_for_a_good_one(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        (good,) = claim_images(session, version.id, batch, items(session, batch, ("1" * 64, "1.2.3", "9.9")), AN_HOUR)
        record_outcomes(session, [outcome(good, 0.8)])
        (broken,) = claim_images(session, version.id, batch, items(session, batch, ("2" * 64, "1.2.3", "9.9")), AN_HOUR)
        record_outcomes(session, [outcome(broken, 0, "failed", "truncated DICOM file")])
        (study,) = study_rows(session, version.id)
        assert study.probability == pytest.approx(0.8) and study.flagged


def test_a_study_none_of_whose_images_could_be_screened_is_listed_with_the_reason(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        found = items(session, batch, ("1" * 64, "1.1", "9.9"), ("2" * 64, "1.2", "9.9"), ("3" * 64, "1.3", "7.7"))
        ids = claim_images(session, version.id, batch, found, AN_HOUR)
        link_items(session, version.id, found)
        record_outcomes(session, [outcome(ids[0], 0, "failed"), outcome(ids[1], 0, "failed"), outcome(ids[2], 0.3)])
        studies = {row.study_uid: row for row in batch_studies(session, batch)}
        assert set(studies) == {"9.9", "7.7"}
        assert studies["9.9"].probability is None and studies["9.9"].images_failed == 2
        assert (
            study_note(studies["9.9"]) == "no image could be screened: 2 failed" and study_note(studies["7.7"]) is None
        )


def test_an_image_whose_last_outcome_failed_is_screened_again_by_a_later_batch(sessions):
    """At once: the lease of the screening that failed it is not carried over to the new batch's row (it was, and
    the row waited a minute, SCREEN_WORK_LEASE, for that lease to lapse)."""
    screener, next_worker = (Holder(name, AN_HOUR, 10) for name in ("screener", "next worker"))
    with sessions.begin() as session:
        version = register(session)
        first = new_batch(session, version)
        (row,) = claim_images(session, version.id, first, items(session, first, ("1" * 64, None, None)), AN_HOUR)
        assert take_results(session, [row], screener, "token") == [row]
        record_outcomes(session, [outcome(row, 0, "failed", "file changed since it was enqueued")])
        second = new_batch(session, version)
        assert claim_images(session, version.id, second, items(session, second, ("1" * 64, None, None)), AN_HOUR) == [
            row
        ]
        again = session.get(Result, row)
        session.refresh(again)
        assert (again.status, again.batch_id, again.reason) == ("queued", second, None)
        assert take_results(session, [row], next_worker, "other token") == [row]
        record_outcomes(session, [outcome(row, 0.4)])
        third = new_batch(session, version)  # done stays done
        assert claim_images(session, version.id, third, items(session, third, ("1" * 64, None, None)), AN_HOUR) == []


def test_claims_of_a_process_whose_lease_lapsed_are_adopted(sessions):
    with sessions.begin() as session:
        version = register(session)
        dead = create_batch(session, ["/n"], version.id, BatchMode.CELERY, lease=timedelta(seconds=-1)).id
        alive = create_batch(session, ["/n"], version.id, BatchMode.CELERY, lease=AN_HOUR).id
        dead_found = items(session, dead, ("1" * 64, None, None), ("2" * 64, None, None))
        undispatched, dispatched = claim_images(session, version.id, dead, dead_found, AN_HOUR)
        mark_dispatched(session, [dispatched])  # in the broker's hands: the visibility timeout covers it
        later = items(session, alive, ("1" * 64, None, None), ("2" * 64, None, None))
        assert claim_images(session, version.id, alive, later, AN_HOUR) == []
        link_items(session, version.id, later)
        assert adopt_abandoned(session, alive) == [undispatched]
        assert adopt_abandoned(session, dead) == []  # an adopter's own live lease protects its rows
        assert batch_progress(session, dead).interrupted and not batch_progress(session, alive).interrupted


def test_a_queued_row_is_filled_once_and_stale_claims_are_dispatched_again(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        found = items(session, batch, ("1" * 64, None, None), ("2" * 64, None, None))
        first, second = claim_images(session, version.id, batch, found, AN_HOUR)
        assert record_outcomes(session, [outcome(first, 0.9)]) == 1
        assert record_outcomes(session, [outcome(first, 0.1)]) == 0  # a redelivered chunk changes nothing
        assert session.get(Result, first).probability == pytest.approx(0.9)
        mark_dispatched(session, [second])
        # `second` stays queued (its task was lost): a re-run claims it again once it is stale
        assert claim_images(session, version.id, batch, found, AN_HOUR) == []
        assert claim_images(session, version.id, batch, found, timedelta(0)) == [second]


def test_progress_counts_items_by_their_rows(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        found = items(session, batch, ("1" * 64, None, None), ("2" * 64, None, None))
        found += add_items(session, batch, [{"path": "/n/x", "enqueue_error": "cannot read file: Permission denied"}])
        done, _ = claim_images(session, version.id, batch, found[:2], AN_HOUR)
        link_items(session, version.id, found[:2])
        record_outcomes(session, [outcome(done, 0.2)])
        progress = batch_progress(session, batch)
        assert (progress.total, progress.pending, progress.by_status, progress.finished) == (
            3,
            1,
            {"done": 1, "failed": 1},
            False,
        )


def test_study_score_is_the_highest_image_probability(sessions):
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        found = items(session, batch, ("1" * 64, "1.1", "9.9"), ("2" * 64, "1.2", "9.9"), ("3" * 64, "1.3", "7.7"))
        ids = claim_images(session, version.id, batch, found, AN_HOUR)
        record_outcomes(session, [outcome(i, p) for i, p in zip(ids, (0.2, 0.8, 0.1), strict=True)])
        studies = {s.study_uid: s for s in study_rows(session, version.id)}
        assert studies["9.9"].probability == pytest.approx(0.8) and studies["9.9"].flagged
        assert studies["9.9"].images_screened == 2
        assert not studies["7.7"].flagged


def test_a_study_holds_each_instance_once_at_its_latest_screened_result(sessions):
    """One definition of a study for the results, the worklist and the report: a re-received instance is not
    another image, and its latest screening is the one that counts."""
    with sessions.begin() as session:
        version = register(session)
        batch = new_batch(session, version)
        first = items(session, batch, ("1" * 64, "1.1", "9.9"), ("2" * 64, "1.2", "9.9"))
        ids = claim_images(session, version.id, batch, first, AN_HOUR)
        link_items(session, version.id, first)
        record_outcomes(session, [outcome(ids[0], 0.3), outcome(ids[1], 0.6)])
        again = add_items(session, batch, [{"path": "/n/again", "sha256": "4" * 64, "kind": "dicom",
                                           "sop_uid": "1.1", "study_uid": "9.9"}])  # fmt: skip
        (later,) = claim_images(session, version.id, batch, again, AN_HOUR)
        link_items(session, version.id, again)
        record_outcomes(session, [outcome(later, 0.9)])
        (study,) = study_rows(session, version.id)
        assert (study.images, study.images_screened, study.probability) == (2, 2, pytest.approx(0.9))
        assert [one.result_id for one in instances_of_studies(session, version.id, ["9.9"])] == [later, ids[1]]
        assert sorted(row.result_id for row in study_images(session, "9.9", version.id)) == sorted([later, ids[1]])


def test_workers_starting_together_register_the_released_model_once(database_url, release_registry):
    """Several processes on a fresh database: one version, one active, no crash."""
    from concurrent.futures import ThreadPoolExecutor

    from screening.model.released import ensure_active_model

    engine = make_engine(database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)

    def start_one(_):
        with sessions.begin() as session:
            return ensure_active_model(session, REPOSITORY / "models", release_registry).id

    with ThreadPoolExecutor(4) as pool:
        (active,) = set(pool.map(start_one, range(4)))  # every process: the same version
    with sessions.begin() as session:
        *older, newest = session.scalars(sa.select(ModelVersion).order_by(ModelVersion.id))
        assert len(older) == len(RELEASES) - 1 and {version.status for version in older} == {"retired"}
        assert (newest.status, newest.id) == ("active", active)
        assert newest.artifact_path.endswith(f"{newest.artifact_sha256}.zip") and newest.gate_version is not None
        assert rollback(session).id == older[-1].id  # the release before, to go back to
        with pytest.raises(sa.exc.IntegrityError):
            with session.begin_nested():
                session.add(
                    ModelVersion(
                        name="x",
                        artifact_path="/x",
                        artifact_sha256="e" * 64,
                        preprocessing={},
                        training_config={},
                        data_manifest={},
                        metrics={},
                        threshold=0.5,
                        status="active",
                    )
                )
    engine.dispose()
