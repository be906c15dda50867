"""Printing for the CLI (magnumclient/prettytable look) plus the shared command plumbing.

* :func:`show` prints one object as a ``| Property | Value |`` table, one row per key,
  sorted by key, so ``flotilla baymodel-show X | awk '/ uuid /{print $4}'`` prints
  the uuid. Dicts and lists are shown as JSON, ``None`` as ``-``.
* :func:`table` prints a list of objects with chosen columns.
* With the global ``--json`` flag both print JSON instead; messages then go to stderr
  so that stdout stays parseable.
* :func:`api_command` turns :class:`~flotilla.client.ApiError` into ``CliError``
  (``ERROR: <server message>``, exit 1) and :func:`connect` builds the client.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from flotilla.client import ApiError, Client

Command = Callable[[argparse.Namespace], int]


#: Bidirectional-text controls: they reorder what a terminal shows (U+202E and friends).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), so a name holding an
    ANSI sequence or a carriage return cannot drive the terminal. Newlines are kept."""
    if text.isprintable() and not any(c in _BIDI for c in text):
        return text
    return "".join(
        c
        if c == "\n" or (c.isprintable() and c not in _BIDI) or unicodedata.category(c) == "Zs"
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def format_value(value: Any) -> str:
    """Cell text: ``-`` for None, JSON for dicts and lists, ``str()`` otherwise."""
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A prettytable-style table; cells with newlines span several lines."""
    headers = [printable(h) for h in headers]
    lines_rows: list[list[list[str]]] = [
        [printable(c).split("\n") if c else [""] for c in row] for row in rows
    ]
    widths = [len(h) for h in headers]
    for row in lines_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [sep, line(headers), sep]
    for row in lines_rows:
        height = max(len(cell) for cell in row)
        for n in range(height):
            out.append(line([cell[n] if n < len(cell) else "" for cell in row]))
    out.append(sep)
    return "\n".join(out)


def show(args: argparse.Namespace, obj: Mapping[str, Any], *, exclude: Iterable[str] = ("links",)) -> None:
    """Print one object (magnumclient's print_dict; ``links`` left out of the table)."""
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=2, sort_keys=True))
        return
    skip = set(exclude)
    rows = [(k, format_value(v)) for k, v in sorted(obj.items()) if k not in skip]
    print(render_table(("Property", "Value"), rows))


def table(args: argparse.Namespace, items: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Print a list of objects with ``columns`` (all keys in JSON mode)."""
    if getattr(args, "json", False):
        print(json.dumps(list(items), indent=2, sort_keys=True))
        return
    rows = [[format_value(item.get(c)) for c in columns] for item in items]
    print(render_table(list(columns), rows))


def message(args: argparse.Namespace, text: str) -> None:
    """A human message: stdout normally, stderr with ``--json`` (stdout stays JSON)."""
    print(printable(text), file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def note(text: str) -> None:
    """A side message that never belongs in stdout (progress, hints)."""
    print(printable(text), file=sys.stderr, flush=True)


def extra_columns(base: Sequence[str], fields: str | None) -> list[str]:
    """``--fields a,b``: the base columns plus the requested ones (no duplicates)."""
    cols = list(base)
    for f in (fields or "").split(","):
        f = f.strip()
        if f and f.lower() not in (c.lower() for c in cols):
            cols.append(f)
    return cols


def connect(args: argparse.Namespace) -> Client:
    """The API client for the global connection flags (see ``Client.from_environment``)."""
    return Client.from_environment(
        getattr(args, "os_cloud", None),
        getattr(args, "os_token", None),
        getattr(args, "os_endpoint", None),
        getattr(args, "data_dir", None),
        api_version=getattr(args, "api_version", None) or "latest",
    )


def api_command(func: Command) -> Command:
    """Decorator: report ``ApiError`` as ``ERROR: <server message>`` with exit code 1."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from flotilla.cli.main import CliError

        try:
            return func(args)
        except ApiError as exc:
            raise CliError(exc.message) from exc
        except BrokenPipeError:
            # stdout closed early (``| head``): stop quietly, as other Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141

    return wrapper
