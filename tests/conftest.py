"""Real services only: SQLite files, a fresh PostgreSQL database, the machine's Redis, real workers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from helpers import DICOM, FULLRES, POSTGRES_ADMIN_URL, REDIS_URL, ScreenProcess, fresh_postgres_schema

from screening.config import load_settings
from screening.usecases.context import Services, bootstrap
from screening.usecases.enqueue import BatchOutcome, enqueue_folders

# Test tiers, derived from what a test uses so that a tier can never be out of date:
#   e2e          runs `screen` processes (the CLI, workers, Flower) or injects faults into them
#   integration  talks to Redis or PostgreSQL, or waits for a training run
#   unit         neither: plain functions, SQLite files and models in this process (`make test-fast`)
E2E_FIXTURES = {"screen_env", "jax_env", "start_worker", "env_for"}
INTEGRATION_FIXTURES = {"redis_url", "postgres_url", "trained"}  # `trained`: a training run, a minute


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in ("unit", "integration", "e2e")):
            continue  # said explicitly: a test that asks for its fixtures at run time
        used = set(getattr(item, "fixturenames", ()))
        on_postgres = "postgresql" in getattr(getattr(item, "callspec", None), "params", {}).values()
        if used & E2E_FIXTURES or item.path.name == "test_faults.py":
            item.add_marker(pytest.mark.e2e)
        elif used & INTEGRATION_FIXTURES or on_postgres:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def postgres_url():
    name = f"screening_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield str(sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name))
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'screening.db'}"
    return fresh_postgres_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture
def redis_url():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def screen_env(tmp_path):
    """Environment for `screen` subprocesses: a data dir of the test's own, no broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREEN_")}
    env.update(SCREEN_DATA_DIR=str(tmp_path / "data"), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def jax_env(screen_env, tmp_path):
    """`screen` as on the GPU machines: KERAS_BACKEND=jax, and TensorFlow cannot be imported."""
    blocker = tmp_path / "no-tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("TensorFlow is not installed on this machine")\n')
    return {
        **screen_env,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": str(blocker.parent),
        "SCREEN_DATA_DIR": str(tmp_path / "jax-data"),
    }


@pytest.fixture
def start_worker(tmp_path):
    workers: list[ScreenProcess] = []

    def start(env: dict, name: str = "worker", queues: str = "screening") -> ScreenProcess:
        arguments = ["worker", "--hostname", f"{name}@%h", "--queues", queues]
        worker = ScreenProcess(env, arguments, tmp_path / f"{name}.log", " ready.")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def release_registry(tmp_path_factory) -> Path:
    """A registry folder for the whole test process: the releases are copied into it once, not once per test."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def bootstrapped_database(tmp_path_factory) -> Path:
    """An embedded database bootstrapped once per test process: migrated, the releases registered (their
    artifacts in this folder's registry, read-only, for the whole session). `services` copies it for each test."""
    folder = tmp_path_factory.mktemp("bootstrapped")
    with pytest.MonkeyPatch.context() as patch:
        embedded(patch, folder).engine.dispose()
    return folder / "screening.db"


def embedded(patch: pytest.MonkeyPatch, data: Path) -> Services:
    """`bootstrap()` as every command runs it on the embedded default: its data in `data`, no database URL and no
    broker from the environment."""
    patch.setenv("SCREEN_DATA_DIR", str(data))
    for name in ("SCREEN_DATABASE_URL", "SCREEN_BROKER_URL"):
        patch.delenv(name, raising=False)
    return bootstrap(load_settings())


def copy_database(source: Path, target: Path) -> None:
    """SQLite's own backup: whole, whatever the source's write-ahead log still holds."""
    with sqlite3.connect(source) as reading, sqlite3.connect(target) as writing:
        reading.backup(writing)


@pytest.fixture
def services(tmp_path, monkeypatch, bootstrapped_database):
    """What `bootstrap()` gives every command: a migrated SQLite database with the released model active, in a
    data folder of the test's own (a copy of the session's bootstrapped database: the releases are not copied and
    hashed again for every test)."""
    data = tmp_path / "data"
    data.mkdir()
    copy_database(bootstrapped_database, data / "screening.db")
    services = embedded(monkeypatch, data)
    yield services
    services.engine.dispose()


@pytest.fixture(scope="session")
def screened_night(tmp_path_factory, bootstrapped_database, sample_night) -> tuple[Path, BatchOutcome]:
    """The sample night screened once per test process, in this process: the database it left, and what the
    enqueue returned. `screened` restores that database for each test that asks."""
    data = tmp_path_factory.mktemp("screened")
    copy_database(bootstrapped_database, data / "screening.db")
    with pytest.MonkeyPatch.context() as patch:
        services = embedded(patch, data)
        outcome = enqueue_folders(services, [fill_sample_night(sample_night)])
        services.engine.dispose()
    return data / "screening.db", outcome


@pytest.fixture
def screened(services, sample_folder, screened_night) -> BatchOutcome:
    """The sample night, screened in this process (the session's screening, its database restored as this test's)."""
    database, outcome = screened_night
    services.engine.dispose()  # no connection open on the file the backup replaces
    copy_database(database, services.settings.data_dir / "screening.db")
    return outcome


@pytest.fixture(scope="session")
def sample_night(tmp_path_factory) -> Path:
    """Where the sample night lies: one path for the whole test process, so it is screened once (`screened`)."""
    return tmp_path_factory.mktemp("sample") / "night"


@pytest.fixture
def sample_folder(sample_night) -> Path:
    """The sample night as it was, for each test: whatever an earlier test changed in it is made anew."""
    return fill_sample_night(sample_night)


def fill_sample_night(folder: Path) -> Path:
    """A night's folder: the six DICOM files, four full-size JPEGs, and a file that is no image."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(DICOM, folder / "dicom")
    jpegs = folder / "jpeg"
    jpegs.mkdir()
    for source in (
        sorted((FULLRES / "train" / "NORMAL").iterdir())[:2] + sorted((FULLRES / "train" / "PNEUMONIA").iterdir())[:2]
    ):
        shutil.copy(source, jpegs / source.name)
    (folder / "notes.txt").write_text("not an image")
    return folder
