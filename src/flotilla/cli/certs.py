"""``ca-show``, ``ca-sign``, ``ca-rotate``, ``quotas-*``, ``stats-list`` and ``service-list``.

Flags follow python-magnumclient 2.17 (reference §8.2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flotilla.cli.output import api_command, connect, message, show, table
from flotilla.client import Client

SERVICE_COLUMNS = ("id", "host", "binary", "state", "disabled", "disabled_reason", "created_at", "updated_at")
QUOTA_COLUMNS = ("project_id", "resource", "hard_limit")


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


def _target_uuid(client: Client, args: argparse.Namespace) -> str:
    cluster = getattr(args, "positional_cluster", None)
    if cluster and args.cluster:
        raise _cli_error("The --cluster parameter and the positional <cluster> are mutually exclusive.")
    cluster = cluster or args.cluster
    if cluster:
        return str(client.get_cluster(cluster, "clusters")["uuid"])
    if args.bay:
        return str(client.get_cluster(args.bay, "bays")["uuid"])
    raise _cli_error("Missing argument: --cluster or --bay.")


def _print_pem(args: argparse.Namespace, cert: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(cert, indent=2, sort_keys=True))
    else:
        print(cert.get("pem", ""))


@api_command
def cmd_ca_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cert = client.get_ca(_target_uuid(client, args))
    _print_pem(args, cert)
    return 0


@api_command
def cmd_ca_sign(args: argparse.Namespace) -> int:
    if args.csr is None or not Path(args.csr).is_file():
        raise _cli_error("A CSR must be provided: --csr FILE (a PEM certificate signing request).")
    csr = Path(args.csr).read_text()
    with connect(args) as client:
        cert = client.sign_csr(_target_uuid(client, args), csr)
    _print_pem(args, cert)
    return 0


@api_command
def cmd_ca_rotate(args: argparse.Namespace) -> int:
    with connect(args) as client:
        uuid = str(client.get_cluster(args.cluster, "clusters")["uuid"])
        client.rotate_ca(uuid)
    message(args, f"Request to rotate the CA certificate of cluster {args.cluster} has been accepted.")
    return 0


@api_command
def cmd_quotas_list(args: argparse.Namespace) -> int:
    params = {
        "limit": args.limit,
        "marker": args.marker,
        "sort_key": args.sort_key,
        "sort_dir": args.sort_dir,
    }
    with connect(args) as client:
        items = client.list_quotas(all_tenants=args.all_tenants, **params)
    table(args, items, QUOTA_COLUMNS)
    return 0


@api_command
def cmd_quotas_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.get_quota(args.project_id, args.resource), exclude=())
    return 0


@api_command
def cmd_quotas_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.create_quota(args.project_id, args.resource, args.hard_limit), exclude=())
    return 0


@api_command
def cmd_quotas_update(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.update_quota(args.project_id, args.resource, args.hard_limit), exclude=())
    return 0


@api_command
def cmd_quotas_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.delete_quota(args.project_id, args.resource)
    message(
        args,
        f"Request to delete quota for project id {args.project_id} and resource {args.resource} "
        "has been accepted.",
    )
    return 0


@api_command
def cmd_stats_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.get_stats(args.project_id), exclude=())
    return 0


@api_command
def cmd_service_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        table(args, client.list_services(), SERVICE_COLUMNS)
    return 0


def _quota_args(p: argparse.ArgumentParser, *, hard_limit: bool) -> None:
    p.add_argument("--project-id", required=True, metavar="<project-id>", help="Project ID.")
    p.add_argument("--resource", required=True, metavar="<resource>", help="Resource name (Cluster).")
    if hard_limit:
        p.add_argument(
            "--hard-limit",
            metavar="<hard-limit>",
            type=int,
            default=1,
            help="Max resource limit (default 1).",
        )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ca-show",
        help="Show the CA certificate of a cluster or bay.",
        description="Print the cluster's CA certificate (PEM): GET /v1/certificates/<cluster uuid>.",
    )
    p.add_argument("positional_cluster", metavar="<cluster>", nargs="?", help="ID or name of the cluster.")
    p.add_argument("--cluster", metavar="<cluster>", help="ID or name of the cluster.")
    p.add_argument("--bay", metavar="<bay>", help="ID or name of the bay.")
    p.set_defaults(func=cmd_ca_show)

    p = sub.add_parser(
        "ca-sign",
        help="Have a cluster's CA sign a CSR.",
        description=(
            "Send a certificate signing request to the cluster's CA (POST /v1/certificates) and print the "
            "signed certificate (PEM). The CSR's subject is kept; CA flags are removed."
        ),
    )
    p.add_argument("--csr", metavar="<csr>", help="File with the PEM CSR to sign.")
    p.add_argument("--cluster", metavar="<cluster>", help="ID or name of the cluster.")
    p.add_argument("--bay", metavar="<bay>", help="ID or name of the bay.")
    p.set_defaults(func=cmd_ca_sign)

    p = sub.add_parser(
        "ca-rotate",
        help="Rotate the CA certificate of a cluster (revokes access).",
        description=(
            "Replace the cluster's CAs (PATCH /v1/certificates/<uuid>); certificates signed by the old CA "
            "stop working. Run cluster-config again afterwards."
        ),
    )
    p.add_argument("--cluster", required=True, metavar="<cluster>", help="ID or name of the cluster.")
    p.set_defaults(func=cmd_ca_rotate)

    p = sub.add_parser(
        "quotas-list", help="List quotas (admin).", description="List quotas (GET /v1/quotas; admin only)."
    )
    p.add_argument("--marker", metavar="<marker>", help="The last quota id of the previous page.")
    p.add_argument("--limit", metavar="<limit>", type=int, help="Maximum number of quotas to return.")
    p.add_argument("--sort-key", metavar="<sort-key>", help="Column to sort results by.")
    p.add_argument("--sort-dir", metavar="<sort-dir>", choices=["desc", "asc"], help='"asc" or "desc".')
    p.add_argument("--all-tenants", action="store_true", help="List the quotas of every project.")
    p.set_defaults(func=cmd_quotas_list)

    for name, func, hard, text in (
        ("quotas-create", cmd_quotas_create, True, "Create a quota for a project (admin; POST /v1/quotas)."),
        ("quotas-update", cmd_quotas_update, True, "Change a project's quota (admin; PATCH /v1/quotas/P/R)."),
        ("quotas-show", cmd_quotas_show, False, "Show a project's quota (GET /v1/quotas/P/R)."),
        (
            "quotas-delete",
            cmd_quotas_delete,
            False,
            "Delete a project's quota (admin; DELETE /v1/quotas/P/R).",
        ),
    ):
        p = sub.add_parser(name, help=text.split(" (")[0] + ".", description=text)
        _quota_args(p, hard_limit=hard)
        p.set_defaults(func=func)

    p = sub.add_parser(
        "stats-list",
        help="Show cluster and node counts.",
        description="Show the number of clusters and nodes (GET /v1/stats); admins see all projects.",
    )
    p.add_argument("--project-id", metavar="<project-id>", help="Only this project's clusters.")
    p.set_defaults(func=cmd_stats_list)

    p = sub.add_parser(
        "service-list",
        help="List the conductor services (admin).",
        description="List the conductor services and whether they are up (GET /v1/mservices; admin only).",
    )
    p.set_defaults(func=cmd_service_list)
