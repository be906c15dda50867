"""Server-side commands: ``serve`` and ``token-create`` (run on the service's machine)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="Run the API and the conductor in one process.",
        description=(
            "Run the API and the conductor in one process (the embedded default: SQLite under "
            "--data-dir, clusters on the local Docker Engine). On first start it creates an admin "
            "token and writes DATA_DIR/clouds.yaml so the CLI works with no flags."
        ),
    )
    p.add_argument("--bind", help="HOST:PORT to listen on (default 127.0.0.1:9511).")
    p.add_argument(
        "--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://u:p@host/db (default SQLite)."
    )
    p.add_argument("--auth-strategy", choices=["token", "keystone", "noauth"], help="Default: token.")
    p.add_argument(
        "--no-conductor", action="store_true", help="Serve the API only (for several-process setups)."
    )
    p.add_argument(
        "--api-workers", type=int, metavar="N",
        help="API processes on the one port (default 1; the conductor stays one). Use the machine's cores.",
    )  # fmt: skip
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING.")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "conductor",
        help="Run only the conductor (workers and periodic jobs).",
        description="Run only the conductor, for deployments with several processes on PostgreSQL.",
    )
    p.add_argument("--database-url", help="SQLAlchemy URL (default SQLite under the data dir).")
    p.add_argument("--log-level", default=None)
    p.set_defaults(func=cmd_conductor)

    p = sub.add_parser(
        "engine-stop",
        help="Stop the Docker Engine Flotilla started for this data dir (when no cluster uses it).",
        description=(
            "Stop the dockerd that Flotilla started and owns under DATA_DIR/docker, by its pid. "
            "Refuses while containers of Flotilla clusters still exist (delete the clusters first)."
        ),
    )
    p.add_argument("--force", action="store_true", help="Stop it even if cluster nodes still exist.")
    p.set_defaults(func=cmd_engine_stop)

    p = sub.add_parser(
        "token-create",
        help="Create an API token for a user in a project (prints it once).",
        description="Create an API token bound to a user, a project and a role. Works on the database directly.",
    )
    p.add_argument("--project", required=True, help="Project id the token acts in.")
    p.add_argument("--user", required=True, help="User id.")
    p.add_argument("--role", required=True, choices=["admin", "member", "reader"])
    p.add_argument("--description")
    p.add_argument(
        "--expires-days", type=float, metavar="<days>",
        help="Days until the token expires (default: the token_ttl_days setting, 30; 0: never).",
    )  # fmt: skip
    p.add_argument("--database-url")
    p.set_defaults(func=cmd_token_create)

    from flotilla.cli import tokens as token_commands

    token_commands.register(sub)


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from flotilla.settings import load_settings  # lazy: keeps every other command's start fast

    return load_settings(
        data_dir=args.data_dir, database_url=getattr(args, "database_url", None),
        log_level=getattr(args, "log_level", None), **extra,
    )  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    from flotilla.cli.main import CliError
    from flotilla.server import run_server

    if args.api_workers is not None and not 1 <= args.api_workers <= 64:
        raise CliError(f"--api-workers must be between 1 and 64, got {args.api_workers}")
    extra: dict[str, Any] = {
        "bind": args.bind, "auth_strategy": args.auth_strategy, "api_workers": args.api_workers,
    }  # fmt: skip
    settings = _settings(args, **extra)
    if args.no_conductor:
        settings.conductor.enabled = False
    logging.getLogger().setLevel(settings.log_level.upper())
    return run_server(settings)


def cmd_conductor(args: argparse.Namespace) -> int:
    from flotilla.server import run_conductor

    settings = _settings(args)
    logging.getLogger().setLevel(settings.log_level.upper())
    return run_conductor(settings)


def cmd_token_create(args: argparse.Namespace) -> int:
    from flotilla.cli.main import CliError
    from flotilla.db.engine import Database
    from flotilla.services import bootstrap, tokens

    settings = _settings(args)
    days = settings.token_ttl_days if args.expires_days is None else args.expires_days
    if days < 0 or days > 36500:
        raise CliError(f"--expires-days must be between 0 (never) and 36500, got {days}")
    db = Database(settings)
    bootstrap.prepare_database(db)
    try:
        with db.session() as s:
            token = tokens.create(
                s, user_id=args.user, project_id=args.project, roles=[args.role], description=args.description,
                expires_at=tokens.expiry(days),
            )  # fmt: skip
    finally:
        db.dispose()
    print(token)
    print(f"# export OS_TOKEN={token} OS_ENDPOINT_OVERRIDE={settings.endpoint}/v1", file=sys.stderr)
    return 0


def cmd_engine_stop(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flotilla.cli.main import CliError
    from flotilla.drivers.providers.local.engine import Engine
    from flotilla.drivers.providers.local.sweep import leaks

    settings = _settings(args)
    pidfile = Path(settings.data_dir) / "docker" / "dockerd.pid"
    if not pidfile.is_file():
        print(f"no Flotilla-owned Docker Engine for {settings.data_dir}", file=sys.stderr)
        return 0
    engine = Engine.connect(None, Path(settings.data_dir))
    left = leaks(engine)
    if left and not args.force:
        raise CliError(
            f"cluster resources still exist ({', '.join(left[:5])}...); delete the clusters or use --force"
        )
    engine.stop()
    print(f"stopped the Docker Engine of {settings.data_dir}", file=sys.stderr)
    return 0
