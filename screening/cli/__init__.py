"""The `screen` command: each click command parses its options, calls one use case and prints the result."""

from screening.cli.main import main

__all__ = ["main"]
