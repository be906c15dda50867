"""The ``flotilla`` command (also installed as ``magnum``).

Each noun lives in its own module exposing ``register(subparsers)``; every command
function takes the parsed args and returns an exit code. Errors from the server are
printed (its message) and give a non-zero exit; no tracebacks reach the user.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flotilla import __version__
from flotilla.errors import FlotillaError

#: Command modules, in the order their commands appear in --help.
MODULES = (
    "flotilla.cli.server",
    "flotilla.cli.templates",
    "flotilla.cli.clusters",
    "flotilla.cli.upgrade",
    "flotilla.cli.certs",
    "flotilla.cli.catalog",
    "flotilla.cli.workloads",
)


class CliError(Exception):
    """A user-facing failure: printed as ``ERROR: <message>``, exit code 1."""


class CommandParser(argparse.ArgumentParser):
    """The parser of one command (and of ``flotilla`` itself), which can add options only
    when it is used: :meth:`defer` takes a function that adds them, run before this
    parser parses or prints its help. For options whose list is costly to find (entry
    points: every installed package's metadata is read, tens of ms), so that the other
    commands, a list above all, do not pay for them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_options: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add_options)

    def _add_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._add_deferred()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_deferred()
        return super().format_help()


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The options every command understands, before the command or (``after_command``)
    after it: ``flotilla serve --data-dir X`` as well as ``flotilla --data-dir X serve``.

    After the command they default to SUPPRESS, so an option not repeated there keeps the
    value given before the command; an option string the command defines itself wins.
    """
    taken = set(parser._option_string_actions) if after_command else set()
    extra: dict[str, object] = {"default": argparse.SUPPRESS} if after_command else {}

    def add(group: argparse._ActionsContainer, *flags: str, **kwargs: object) -> None:
        if taken.intersection(flags):
            return
        group.add_argument(*flags, **{**kwargs, **extra})  # type: ignore[arg-type]

    add(parser, "--debug", action="store_true", help="Log HTTP requests and show tracebacks.")
    title = "global options" if after_command else "connection (default: the data dir's clouds.yaml)"
    conn = parser.add_argument_group(title)
    add(conn, "--os-cloud", dest="os_cloud", help="Cloud name in clouds.yaml (env OS_CLOUD).")
    add(conn, "--os-token", dest="os_token", help="API token (env OS_TOKEN).")
    add(
        conn, "--os-endpoint-override", "--bypass-url", dest="os_endpoint",
        help="API endpoint (env OS_ENDPOINT_OVERRIDE).",
    )  # fmt: skip
    add(conn, "--data-dir", dest="data_dir", help="Flotilla data dir (env FLOTILLA_DATA_DIR).")
    add(
        conn, "--magnum-api-version", dest="api_version", default="latest",
        help="Microversion to request (default latest).",
    )  # fmt: skip
    add(conn, "--json", action="store_true", help="Print JSON instead of tables (for scripts).")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="flotilla",
        description=(
            "Flotilla: container clusters on demand. Speaks OpenStack Magnum's v1 API; "
            "the bay/baymodel and cluster/cluster-template commands follow python-magnumclient."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    _add_global_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for command in set(sub.choices.values()):
        _add_global_options(command, after_command=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code: int = func(args)
        return code
    except (CliError, FlotillaError) as exc:
        if args.debug:
            raise
        from flotilla.cli.output import printable

        print(f"ERROR: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
