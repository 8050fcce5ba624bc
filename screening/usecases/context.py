"""The services every use case works with, and the one place where starting up has side effects."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.migrate import current_revision, head_revision, upgrade
from screening.db.registry import NoActiveModel, active_version
from screening.errors import Conflict, Unavailable
from screening.model.artifact import ArtifactError, verify_artifact_file
from screening.model.registered import RegisteredVersion
from screening.model.released import ensure_active_model


class SchemaOutdated(Conflict):
    pass


class DatabaseUnavailable(Unavailable):
    pass


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]


def connect(settings: Settings) -> Services:
    """Sessions on the configured database, nothing else (a worker process, after the fork)."""
    engine = make_engine(settings.database_url)
    return Services(settings, engine, make_session_factory(engine))


def bootstrap(settings: Settings) -> Services:
    """Connect, bring the schema up to date and make sure a model is active.

    The embedded SQLite database migrates itself; a shared database is migrated deliberately, with
    `screen db upgrade`. On a fresh registry the released model in models/ is registered and activated."""
    services = connect(settings)
    try:
        revision = current_revision(services.engine)
    except DBAPIError as problem:  # not there, not reachable, not ours to read: one line, no traceback
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = " ".join(str(problem.orig or type(problem).__name__).split())
        raise DatabaseUnavailable(f"the database {where} cannot be used: {reason}") from None
    if revision != head_revision():
        if services.engine.dialect.name != "sqlite":
            raise SchemaOutdated("the database schema is not up to date: run `screen db upgrade`")
        upgrade(services.engine)
    with services.sessions.begin() as session:
        try:
            ensure_active_model(session, settings.models_dir, settings.registry_dir)
        except NoActiveModel:
            pass  # no released model to register: `screen models register` is the way out
    return services


def upgrade_database(settings: Settings) -> str:
    """`screen db upgrade`: create or migrate the schema to the newest revision (Alembic); returns it."""
    upgrade(make_engine(settings.database_url))
    return head_revision()


def active_model(services: Services) -> RegisteredVersion:
    with services.sessions() as session:
        return RegisteredVersion.of(active_version(session))


def servable_active_model(services: Services) -> RegisteredVersion:
    """The active version, after checking its artifact is the file the registry recorded: a batch must not
    be recorded, nor images claimed, for a model no worker can load."""
    version = active_model(services)
    try:
        verify_artifact_file(version.artifact_path, version.artifact_sha256)
    except ArtifactError as problem:
        raise ArtifactError(
            f"the active model version {version.id} cannot be served: {problem} (`screen models rollback`)"
        ) from None
    return version
