"""What every command is handed: the settings, and the services of `bootstrap()` once a command needs them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar, cast

import click

from screening.config import Settings, load_settings
from screening.model.device import import_backend_quietly
from screening.usecases.context import Services, bootstrap


@dataclass
class AppContext:
    settings: Settings

    @cached_property
    def services(self) -> Services:
        """Bootstrapped on first use: commands that need no database (weights, db upgrade) never touch it."""
        return bootstrap(self.settings)


pass_app = click.make_pass_decorator(AppContext)


def make_context() -> AppContext:
    return AppContext(load_settings())


Command = TypeVar("Command", bound=Callable[..., Any])


def loads_backend(command: Command) -> Command:
    """A command that scores or trains: the backend imported quietly before it starts (under `pass_app`)."""

    @functools.wraps(command)
    def quietly(*args: Any, **kwargs: Any) -> Any:
        import_backend_quietly()
        return command(*args, **kwargs)

    return cast(Command, quietly)
