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
from collections.abc import Sequence

from flotilla import __version__
from flotilla.errors import FlotillaError

#: Command modules, in the order their commands appear in --help.
MODULES = (
    "flotilla.cli.server",
    "flotilla.cli.templates",
    "flotilla.cli.clusters",
    "flotilla.cli.certs",
    "flotilla.cli.catalog",
    "flotilla.cli.workloads",
)


class CliError(Exception):
    """A user-facing failure: printed as ``ERROR: <message>``, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flotilla",
        description=(
            "Flotilla: container clusters on demand. Speaks OpenStack Magnum's v1 API; "
            "the bay/baymodel and cluster/cluster-template commands follow python-magnumclient."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--debug", action="store_true", help="Log HTTP requests and show tracebacks.")
    conn = parser.add_argument_group("connection (default: the data dir's clouds.yaml)")
    conn.add_argument("--os-cloud", dest="os_cloud", help="Cloud name in clouds.yaml (env OS_CLOUD).")
    conn.add_argument("--os-token", dest="os_token", help="API token (env OS_TOKEN).")
    conn.add_argument(
        "--os-endpoint-override",
        "--bypass-url",
        dest="os_endpoint",
        help="API endpoint (env OS_ENDPOINT_OVERRIDE).",
    )
    conn.add_argument("--data-dir", dest="data_dir", help="Flotilla data dir (env FLOTILLA_DATA_DIR).")
    conn.add_argument(
        "--magnum-api-version",
        dest="api_version",
        default="latest",
        help="Microversion to request (default latest).",
    )
    conn.add_argument("--json", action="store_true", help="Print JSON instead of tables (for scripts).")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
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
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
