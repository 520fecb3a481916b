"""How every ``brobygger`` command prints: literal text, tables fit for a pipe, JSON.

Rules (docs/architecture.md, "The command line"):

- Nothing a command prints is read as rich markup: refusal texts carry XPaths such as
  ``[/Emessage/Sender]`` and must come out exactly as written. Colour is added by style,
  never by ``[red]…[/red]`` in a string that also holds data.
- On a terminal a listing is a rich table. When stdout is not a terminal (a pipe, a file) it is
  plain tab-separated lines: the first names the columns, then one record per line, never
  wrapped or cut (tabs and newlines inside a value become spaces), so ``| grep <id>`` finds a
  record and ``| grep -c pending`` counts them.
- Every listing also has ``--json`` (``print_json``).

Other command modules use these helpers instead of ``rich.Console`` directly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "error",
    "fail",
    "print_json",
    "print_table",
    "say",
    "stdout_is_terminal",
]


def stdout_is_terminal() -> bool:
    """True when a person (not a pipe or a file) reads stdout."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def _console(*, err: bool = False) -> Console:
    # markup=False and highlight=False: data is printed as it is, never interpreted.
    return Console(stderr=err, markup=False, highlight=False, emoji=False)


def say(text: str, *, style: str | None = None, err: bool = False) -> None:
    """One literal line (styled on a terminal), on stdout or stderr; never wrapped."""
    stream: TextIO = sys.stderr if err else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if style is not None and isatty and isatty():
        _console(err=err).print(Text(text, style=style), soft_wrap=True)
    else:
        stream.write(text + "\n")
        stream.flush()


def error(message: str) -> None:
    """``error: <message>`` on stderr, the message exactly as given."""
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        _console(err=True).print(Text("error: ", style="red") + Text(message), soft_wrap=True)
    else:
        stream.write(f"error: {message}\n")
        stream.flush()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: <message>`` and return the ``typer.Exit`` to raise."""
    error(message)
    return typer.Exit(code)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split()) if any(c in text for c in "\t\r\n") else text


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """A table on a terminal; tab-separated lines (header first) anywhere else.

    ``empty``: printed (to stderr in a pipe, so the pipe stays clean) when there are no rows.
    """
    rows = [list(row) for row in rows]
    if not rows and empty is not None:
        say(empty, err=not stdout_is_terminal())
        return
    if not stdout_is_terminal():
        out = sys.stdout
        out.write("\t".join(columns) + "\n")
        for row in rows:
            out.write("\t".join(_cell(v) for v in row) + "\n")
        out.flush()
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")  # wrap, never cut an id short
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    _console().print(table)


def print_json(data: Any) -> None:
    """Indented JSON on stdout (UTF-8 as it is)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
