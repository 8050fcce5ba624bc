"""Tables for people: every cell shown as plain text (a file name like `pt1 [left].jpeg` is not markup, a newline
or a right-to-left override in one is shown as an escape),
and nothing cut short: on a terminal long cells wrap; into a pipe or a file each row keeps its natural width."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from screening.text import visible

NATURAL_WIDTH = 100_000  # a table does not expand, so this only means "never wrap or cut"


def make_table(headers: Iterable[str], title: str | None = None) -> Table:
    return Table(*[Column(header, overflow="fold") for header in headers], title=title)


def add_row(table: Table, cells: Iterable[object]) -> None:
    table.add_row(*[Text("" if cell is None else visible(str(cell))) for cell in cells])


def print_table(table: Table) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=NATURAL_WIDTH, soft_wrap=False)
    console.print(table)
