"""``baymodel-*`` and ``cluster-template-*``: python-magnumclient 2.17's flags and requests.

The create commands keep magnumclient's defaults (``--flavor-id m1.medium``,
``--dns-nameserver 8.8.8.8``, ``--docker-storage-driver devicemapper``, ``--server-type vm``)
and send every creation key, unset ones as ``null`` (reference §8.2), so the server
answers exactly as it would to magnumclient: e.g. devicemapper without
``--docker-volume-size`` of at least 3 is refused with the server's message.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flotilla.cli.output import api_command, connect, extra_columns, message, note, show, table
from flotilla.client import ApiError, TemplateView

#: ``--detail`` columns (magnumclient's basemodels.OUTPUT_ATTRIBUTES, in its order).
DETAIL_COLUMNS = (
    "uuid", "name", "coe", "image_id", "keypair_id", "flavor_id", "master_flavor_id", "external_network_id",
    "fixed_network", "fixed_subnet", "network_driver", "volume_driver", "dns_nameserver", "apiserver_port",
    "docker_volume_size", "docker_storage_driver", "cluster_distro", "http_proxy", "https_proxy", "no_proxy",
    "registry_enabled", "insecure_registry", "labels", "tls_disabled", "public", "hidden", "server_type",
    "master_lb_enabled", "floating_ip_enabled", "tags", "created_at", "updated_at",
)  # fmt: skip
FIELDS_HELP = (
    "Comma-separated list of extra fields to display. Available fields: uuid, name, coe, image_id, public, "
    "link, apiserver_port, server_type, tls_disabled, registry_enabled (any attribute works)."
)
LABELS_METAVAR = "<KEY1=VALUE1,KEY2=VALUE2;KEY3=VALUE3...>"


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


# ----------------------------------------------------------------------------- helpers (shared)


def format_labels(lbls: list[str] | None) -> dict[str, str]:
    """magnumclient's ``format_labels``: repeated ``--labels K=V``, or one ``K1=V1,K2=V2;K3=V3``.

    A key given twice gets its values joined with ``,`` (``--labels a=1 --labels a=2`` → ``{"a": "1,2"}``).
    """
    if not lbls:
        return {}
    items = list(lbls)
    if len(items) == 1 and items[0].count("=") > 1:
        items = items[0].replace(";", ",").split(",")
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise _cli_error(f"labels must be a list of KEY=VALUE not {item}")
        labels[key] = f"{labels[key]},{value}" if key in labels else value
    return labels


def args_array_to_patch(op: str, attributes: list[str]) -> list[dict[str, Any]]:
    """magnumclient's ``args_array_to_patch`` (2.17): ``path=value`` → JSON-patch operations.

    The value is JSON-decoded when possible, else kept as a string; ``labels`` and
    ``health_status_reason`` become the Python-literal string of the parsed labels
    (``labels=k=v,k2=v2`` → ``"{'k': 'v', 'k2': 'v2'}"``); ``remove`` needs only the path.
    """
    patch: list[dict[str, Any]] = []
    for attr in attributes:
        if not attr.startswith("/"):
            attr = "/" + attr
        if op in ("add", "replace"):
            path, sep, raw = attr.partition("=")
            if not sep:
                raise _cli_error(f'Attributes must be a list of PATH=VALUE not "{attr.lstrip("/")}"')
            value: Any
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            if path in ("/labels", "/health_status_reason"):
                text = raw if not isinstance(value, str) else value
                value = str(format_labels([text]))
            patch.append({"op": op, "path": path, "value": value})
        elif op == "remove":
            patch.append({"op": op, "path": attr.split("=", 1)[0]})
        else:
            raise _cli_error(f"Unknown PATCH operation: {op}")
    return patch


def add_list_flags(p: argparse.ArgumentParser, what: str, *, detail: bool = True) -> None:
    p.add_argument("--limit", metavar="<limit>", type=int, help=f"Maximum number of {what} to return.")
    p.add_argument(
        "--marker", metavar="<marker>", help=f"The last {what[:-1]} UUID of the previous page; list after it."
    )
    p.add_argument("--sort-key", metavar="<sort-key>", help="Column to sort results by (default: id).")
    p.add_argument(
        "--sort-dir",
        metavar="<sort-dir>",
        choices=["desc", "asc"],
        help='Direction to sort: "asc" or "desc".',
    )
    p.add_argument("--fields", metavar="<fields>", help=FIELDS_HELP)
    if detail:
        p.add_argument("--detail", action="store_true", help=f"Show every attribute of the {what}.")


def list_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "limit": args.limit, "marker": args.marker, "sort_key": args.sort_key, "sort_dir": args.sort_dir,
        "detail": getattr(args, "detail", False),
    }  # fmt: skip


def add_update_args(p: argparse.ArgumentParser, dest: str, noun: str) -> None:
    """``<ident> <op> <path=value> ...`` like magnumclient's update commands."""
    p.add_argument(dest, metavar=f"<{noun.replace(' ', '_')}>", help=f"UUID or name of the {noun}.")
    p.add_argument(
        "op", metavar="<op>", choices=["add", "replace", "remove"], help="Operation: add, replace or remove."
    )
    p.add_argument(
        "attributes",
        metavar="<path=value>",
        nargs="+",
        help="Attributes to add/replace or remove (only PATH is needed for remove). Values are JSON when "
        "they parse as JSON, else strings; labels take K1=V1,K2=V2, e.g. labels=a=1,b=2.",
    )


# ----------------------------------------------------------------------------- commands


def _view(args: argparse.Namespace) -> TemplateView:
    view: TemplateView = args.view
    return view


def _noun(args: argparse.Namespace) -> str:
    return "baymodel" if args.view == "baymodels" else "cluster template"


@api_command
def cmd_create(args: argparse.Namespace) -> int:
    baymodel = args.view == "baymodels"
    positional = getattr(args, "positional_name", None)
    if positional and args.name:
        raise _cli_error("The --name parameter and the positional <name> are mutually exclusive; give one.")
    body: dict[str, Any] = {
        "name": positional or args.name,
        "flavor_id": args.flavor,
        "master_flavor_id": args.master_flavor,
        "image_id": args.image,
        "keypair_id": args.keypair,
        "external_network_id": args.external_network,
        "fixed_network": args.fixed_network,
        "fixed_subnet": args.fixed_subnet,
        "network_driver": args.network_driver,
        "volume_driver": args.volume_driver,
        "dns_nameserver": args.dns_nameserver,
        "docker_volume_size": args.docker_volume_size,
        "docker_storage_driver": args.docker_storage_driver,
        "coe": args.coe,
        "http_proxy": args.http_proxy,
        "https_proxy": args.https_proxy,
        "no_proxy": args.no_proxy,
        "labels": format_labels(args.labels),
        "tls_disabled": args.tls_disabled,
        "public": args.public,
        "registry_enabled": args.registry_enabled,
        "server_type": args.server_type,
        "master_lb_enabled": args.master_lb_enabled,
    }
    if not baymodel:
        body["insecure_registry"] = args.insecure_registry
        body["hidden"] = args.hidden
        if args.tags is not None:
            body["tags"] = args.tags
    if len(args.floating_ip_enabled) > 1:
        raise _cli_error(
            "--floating-ip-enabled and --floating-ip-disabled are mutually exclusive and should be "
            "specified only once."
        )
    if args.floating_ip_enabled:
        body["floating_ip_enabled"] = args.floating_ip_enabled[0]
    with connect(args) as client:
        show(args, client.create_template(body, _view(args)))
    return 0


@api_command
def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        items = client.list_templates(_view(args), **list_params(args))
    base = DETAIL_COLUMNS if getattr(args, "detail", False) else ("uuid", "name")
    table(args, items, extra_columns(base, args.fields))
    return 0


@api_command
def cmd_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.get_template(args.template, _view(args)))
    return 0


@api_command
def cmd_update(args: argparse.Namespace) -> int:
    patch = args_array_to_patch(args.op, args.attributes)
    with connect(args) as client:
        show(args, client.update_template(args.template, patch, _view(args)))
    return 0


@api_command
def cmd_delete(args: argparse.Namespace) -> int:
    failed = 0
    with connect(args) as client:
        for ident in args.templates:
            try:
                client.delete_template(ident, _view(args))
            except ApiError as exc:
                failed += 1
                note(f"ERROR: Delete for {_noun(args)} {ident} failed: {exc.message}")
                continue
            message(args, f"Request to delete {_noun(args)} {ident} has been accepted.")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- registration


def _add_create(sub: Any, name: str, view: TemplateView) -> None:
    baymodel = view == "baymodels"
    noun = "baymodel" if baymodel else "cluster template"
    p = sub.add_parser(
        name,
        help=f"Create a {noun}.",
        description=(
            f"Create a {noun} (POST /v1/{view}). Same flags and defaults as python-magnumclient 2.17: "
            "--flavor-id m1.medium, --dns-nameserver 8.8.8.8, --docker-storage-driver devicemapper (which "
            "needs --docker-volume-size 3 or more), --server-type vm. Prints the new object."
        ),
    )
    if not baymodel:
        p.add_argument("positional_name", metavar="<name>", nargs="?", help=f"Name of the {noun} to create.")
    p.add_argument("--name", metavar="<name>", help=f"Name of the {noun} (generated when omitted).")
    p.add_argument(
        "--image-id", "--image", dest="image", required=True, metavar="<image>",
        help="Name or UUID of the node image (see `flotilla image-list`).",
    )  # fmt: skip
    p.add_argument(
        "--keypair-id", "--keypair", dest="keypair", required=baymodel, metavar="<keypair>",
        help="Name of the SSH keypair to load into the nodes" + (" (mandatory)." if baymodel else "."),
    )  # fmt: skip
    p.add_argument(
        "--external-network-id", "--external-network", dest="external_network", required=True,
        metavar="<external-network>", help="External network name or UUID (see `flotilla network-list`).",
    )  # fmt: skip
    p.add_argument(
        "--coe", required=True, metavar="<coe>", help="Container Orchestration Engine: kubernetes, swarm, ..."
    )
    p.add_argument(
        "--fixed-network", metavar="<fixed-network>",
        help="A network an admin registered (see `flotilla network-list`); unset: the cluster gets its own.",
    )  # fmt: skip
    p.add_argument("--fixed-subnet", metavar="<fixed-subnet>", help="Private subnet name.")
    p.add_argument(
        "--network-driver",
        metavar="<network-driver>",
        help="Container network driver (flannel, docker, ...).",
    )
    p.add_argument(
        "--volume-driver", metavar="<volume-driver>", help="Container volume driver (cinder, rexray)."
    )
    p.add_argument(
        "--dns-nameserver",
        metavar="<dns-nameserver>",
        default="8.8.8.8",
        help="DNS server (default 8.8.8.8).",
    )
    p.add_argument(
        "--flavor-id", "--flavor", dest="flavor", metavar="<flavor>", default="m1.medium",
        help="Flavor name or UUID of the nodes (default m1.medium; see `flotilla flavor-list`).",
    )  # fmt: skip
    p.add_argument(
        "--master-flavor-id", "--master-flavor", dest="master_flavor", metavar="<master-flavor>",
        help="Flavor name or UUID of the master nodes.",
    )  # fmt: skip
    p.add_argument(
        "--docker-volume-size", metavar="<docker-volume-size>", type=int, help="Docker volume size in GB."
    )
    p.add_argument(
        "--docker-storage-driver", metavar="<docker-storage-driver>", default="devicemapper",
        help="Docker storage driver: devicemapper (default; needs --docker-volume-size >= 3) or overlay.",
    )  # fmt: skip
    p.add_argument("--http-proxy", metavar="<http-proxy>", help="http_proxy for the nodes.")
    p.add_argument("--https-proxy", metavar="<https-proxy>", help="https_proxy for the nodes.")
    p.add_argument("--no-proxy", metavar="<no-proxy>", help="no_proxy for the nodes.")
    p.add_argument(
        "--labels", metavar=LABELS_METAVAR, action="append", default=[],
        help="Arbitrary labels as key=value pairs; may be used several times.",
    )  # fmt: skip
    p.add_argument("--tls-disabled", action="store_true", help="Disable TLS on the cluster APIs.")
    p.add_argument("--public", action="store_true", help=f"Make the {noun} public (admin only).")
    p.add_argument("--registry-enabled", action="store_true", help="Enable the docker registry.")
    p.add_argument("--server-type", metavar="<server-type>", default="vm", help="vm (default) or bm.")
    p.add_argument(
        "--master-lb-enabled", action="store_true", help="Put a load balancer in front of the masters."
    )
    p.add_argument(
        "--floating-ip-enabled", action="append_const", const=True, default=[], dest="floating_ip_enabled",
        help="Give the nodes floating IPs (the server's default).",
    )  # fmt: skip
    p.add_argument(
        "--floating-ip-disabled", action="append_const", const=False, dest="floating_ip_enabled",
        help="Do not give the nodes floating IPs.",
    )  # fmt: skip
    if not baymodel:
        p.add_argument("--insecure-registry", metavar="<insecure-registry>", help="URL of a docker registry.")
        p.add_argument("--hidden", action="store_true", help="Hide the template from lists (admin only).")
        p.add_argument("--visible", dest="hidden", action="store_false", help="Make the template visible.")
        p.add_argument("--tags", metavar="<tags>", help="Tags for the template.")
    p.set_defaults(func=cmd_create, view=view)


def register(sub: Any) -> None:
    for prefix, view in (("baymodel", "baymodels"), ("cluster-template", "clustertemplates")):
        noun = "baymodel" if view == "baymodels" else "cluster template"
        _add_create(sub, f"{prefix}-create", view)  # type: ignore[arg-type]

        p = sub.add_parser(
            f"{prefix}-list", help=f"List {noun}s.", description=f"List {noun}s (GET /v1/{view})."
        )
        add_list_flags(p, f"{noun}s")
        p.set_defaults(func=cmd_list, view=view)

        p = sub.add_parser(
            f"{prefix}-show", help=f"Show a {noun}.",
            description=f"Show a {noun} as a Property/Value table (GET /v1/{view}/<ident>).",
        )  # fmt: skip
        p.add_argument("template", metavar=f"<{prefix.replace('-', '_')}>", help=f"ID or name of the {noun}.")
        p.set_defaults(func=cmd_show, view=view)

        p = sub.add_parser(
            f"{prefix}-update",
            help=f"Update attributes of a {noun}.",
            description=(
                f"Update a {noun} with a JSON patch (PATCH /v1/{view}/<ident>), e.g. "
                f"`flotilla {prefix}-update NAME replace labels=a=1,b=2` or `... remove http_proxy`."
            ),
        )
        add_update_args(p, "template", noun)
        p.set_defaults(func=cmd_update, view=view)

        p = sub.add_parser(
            f"{prefix}-delete", help=f"Delete {noun}s.",
            description=f"Delete one or more {noun}s (DELETE /v1/{view}/<ident>); refused while in use.",
        )  # fmt: skip
        p.add_argument("templates", metavar=f"<{prefix.replace('-', '_')}>", nargs="+", help="IDs or names.")
        p.set_defaults(func=cmd_delete, view=view)
