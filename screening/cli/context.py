"""What every command is handed: the settings, and the services of `bootstrap()` once a command needs them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import click

from screening.config import Settings, load_settings
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
