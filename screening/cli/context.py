"""What every command needs: settings, a migrated database, and an active model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings, load_settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.migrate import current_revision, head_revision, upgrade
from screening.db.registry import NoActiveModel, active_version
from screening.db.schema import ModelVersion
from screening.model.artifact import ArtifactError, verify_artifact_file
from screening.model.released import ensure_active_model


@dataclass
class AppContext:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions on an up-to-date schema whose registry holds the released model.

        The embedded SQLite database migrates itself; a shared database is migrated deliberately,
        with `screen db upgrade`. On a fresh database the released model is registered and activated."""
        if current_revision(self.engine) != head_revision():
            if self.engine.dialect.name != "sqlite":
                raise click.ClickException("the database schema is not up to date: run `screen db upgrade`")
            upgrade(self.engine)
        sessions = make_session_factory(self.engine)
        with sessions.begin() as session:
            try:
                ensure_active_model(session, self.settings.models_dir, self.settings.registry_dir)
            except NoActiveModel:
                pass  # no released model to register: `screen models register` is the way out
        return sessions

    def active_model(self) -> ModelVersion:
        with self.session_factory() as session:
            try:
                return active_version(session)
            except NoActiveModel as problem:
                raise click.ClickException(str(problem)) from None

    def verified_active_model(self) -> ModelVersion:
        """The active version, after checking its artifact is the file the registry recorded: a batch must not
        be recorded, nor images claimed, for a model no worker can load."""
        version = self.active_model()
        try:
            verify_artifact_file(Path(version.artifact_path), version.artifact_sha256)
        except ArtifactError as problem:
            raise click.ClickException(
                f"the active model version {version.id} cannot be served: {problem} (`screen models rollback`)"
            ) from None
        return version


pass_app = click.make_pass_decorator(AppContext)


def make_context() -> AppContext:
    return AppContext(load_settings())
