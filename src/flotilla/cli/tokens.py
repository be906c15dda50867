"""Token commands: ``token-list`` and ``token-revoke`` (through the API: admins see and
revoke every token, anyone else their own user's) and ``token-rotate-admin`` (on the
service's machine: replaces the bootstrap admin token and rewrites clouds.yaml)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flotilla.cli.output import api_command, connect, message, table

TOKEN_COLUMNS = ("id", "user_id", "project_id", "roles", "description", "created_at", "expires_at")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "token-list",
        help="List API tokens (admin: all; others: their own).",
        description="List API tokens by id (the secret itself is never shown again). Admins see every "
        "token; other users the tokens of their own user.",
    )
    p.set_defaults(func=cmd_token_list)
    p = sub.add_parser(
        "token-revoke",
        help="Revoke API tokens by id (admin: any; others: their own).",
        description="Revoke API tokens by the id token-list shows; requests made with them fail at once.",
    )
    p.add_argument("ids", metavar="<id>", nargs="+", help="Token ids (see token-list).")
    p.set_defaults(func=cmd_token_revoke)
    p = sub.add_parser(
        "token-rotate-admin",
        help="Replace the bootstrap admin token and rewrite DATA_DIR/clouds.yaml.",
        description="Create a new admin token, write it to DATA_DIR/clouds.yaml (mode 0600) and revoke "
        "the token that file held, in one transaction. Works on the database directly (run it on the "
        "service's machine; a running server keeps serving and accepts the new token at once).",
    )
    p.add_argument("--database-url", help="SQLAlchemy URL (default SQLite under the data dir).")
    p.set_defaults(func=cmd_token_rotate_admin)


@api_command
def cmd_token_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = client.list_tokens()
    for row in rows:
        if isinstance(row.get("roles"), list):
            row["roles"] = ",".join(str(r) for r in row["roles"])
    table(args, rows, TOKEN_COLUMNS)
    return 0


@api_command
def cmd_token_revoke(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for ident in args.ids:
            client.revoke_token(ident)
            message(args, f"Token {ident} has been revoked.")
    return 0


def cmd_token_rotate_admin(args: argparse.Namespace) -> int:
    from flotilla.db.engine import Database
    from flotilla.services import bootstrap
    from flotilla.settings import load_settings

    settings = load_settings(data_dir=args.data_dir, database_url=args.database_url)
    db = Database(settings)
    try:
        bootstrap.prepare_database(db)
        path = bootstrap.rotate_admin_credentials(settings, db)
    finally:
        db.dispose()
    print(f"rotated the admin token; the new one is in {path} (the old one no longer works)", file=sys.stderr)
    return 0
