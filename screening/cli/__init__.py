"""The `screen` command."""

from screening.cli.main import main

__all__ = ["main"]
