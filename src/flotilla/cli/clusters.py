"""``bay-*``, ``cluster-*``, ``cluster-resize`` and ``nodegroup-list``.

Flags and requests follow python-magnumclient 2.17 (reference §8.2); ``cluster-resize``
follows OSC's ``coe cluster resize``. ``--wait`` (create, update, delete, resize) polls
the cluster every 0.5 s and shows its progress on stderr; ``bay-config`` /
``cluster-config`` live in :mod:`flotilla.cli.cluster_config`, the waiting in
:mod:`flotilla.cli.cluster_wait`.
"""

from __future__ import annotations

import argparse
from typing import Any

from flotilla.cli import cluster_config
from flotilla.cli.cluster_wait import wait_for
from flotilla.cli.output import api_command, connect, extra_columns, message, note, show, table
from flotilla.cli.templates import (
    LABELS_METAVAR,
    add_list_flags,
    add_update_args,
    args_array_to_patch,
    format_labels,
    list_params,
)
from flotilla.client import ApiError, ClusterView

CLUSTER_COLUMNS = ("uuid", "name", "keypair", "node_count", "master_count", "status")
BAY_COLUMNS = ("uuid", "name", "node_count", "master_count", "status")
NODEGROUP_COLUMNS = ("uuid", "name", "flavor_id", "image_id", "node_count", "status", "role")


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


def _view(args: argparse.Namespace) -> ClusterView:
    view: ClusterView = args.view
    return view


def _noun(args: argparse.Namespace) -> str:
    return "bay" if args.view == "bays" else "cluster"


# ----------------------------------------------------------------------------- commands


@api_command
def cmd_create(args: argparse.Namespace) -> int:
    view = _view(args)
    with connect(args) as client:
        if view == "bays":
            baymodel = client.get_template(args.baymodel, "baymodels")
            body: dict[str, Any] = {
                "name": args.name, "baymodel_id": baymodel["uuid"], "node_count": args.node_count,
                "master_count": args.master_count, "discovery_url": args.discovery_url,
                "bay_create_timeout": args.timeout,
            }  # fmt: skip
        else:
            positional = args.positional_name
            if positional and args.name:
                raise _cli_error("The --name parameter and the positional <name> are mutually exclusive.")
            template = client.get_template(args.cluster_template, "clustertemplates")
            body = {
                "name": positional or args.name, "cluster_template_id": template["uuid"],
                "keypair": args.keypair, "node_count": args.node_count, "master_count": args.master_count,
                "discovery_url": args.discovery_url, "create_timeout": args.timeout,
            }  # fmt: skip
            if args.docker_volume_size is not None:
                body["docker_volume_size"] = args.docker_volume_size
            if args.labels is not None:
                body["labels"] = format_labels(args.labels)
            if args.master_flavor is not None:
                body["master_flavor_id"] = args.master_flavor
            if args.flavor is not None:
                body["flavor_id"] = args.flavor
            if args.merge_labels:
                body["merge_labels"] = True
            for key in ("master_lb_enabled", "floating_ip_enabled"):
                flags: list[bool] = getattr(args, key)
                if len(flags) > 1:
                    opt = key.replace("_enabled", "").replace("_", "-")
                    raise _cli_error(f"--{opt}-enabled and --{opt}-disabled are mutually exclusive.")
                if flags:
                    body[key] = flags[0]
        reply = client.create_cluster(body, view)
        uuid = str(reply.get("uuid"))
        if args.api_version == "1.1" and view == "bays":
            show(args, reply)
        else:
            message(args, f"Request to create {_noun(args)} {uuid} has been accepted.")
        if args.wait:
            return wait_for(client, uuid, view, "create")
    return 0


@api_command
def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        items = client.list_clusters(_view(args), **list_params(args))
    base = BAY_COLUMNS if args.view == "bays" else CLUSTER_COLUMNS
    table(args, items, extra_columns(base, args.fields))
    return 0


@api_command
def cmd_show(args: argparse.Namespace) -> int:
    view = _view(args)
    with connect(args) as client:
        cluster = client.get_cluster(args.cluster, view)
        if args.long:
            ref, tview, prefix = (
                ("baymodel_id", "baymodels", "baymodel_")
                if view == "bays"
                else ("cluster_template_id", "clustertemplates", "clustertemplate_")
            )
            tpl = client.get_template(str(cluster[ref]), tview)  # type: ignore[arg-type]
            for key, value in tpl.items():
                if key not in ("links", "uuid") and prefix + key not in cluster:
                    cluster[prefix + key] = value
    show(args, cluster)
    return 0


@api_command
def cmd_update(args: argparse.Namespace) -> int:
    view = _view(args)
    patch = args_array_to_patch(args.op, args.attributes)
    with connect(args) as client:
        before = client.get_cluster(args.cluster, view) if args.wait else None
        reply = client.update_cluster(args.cluster, patch, view, rollback=args.rollback)
        if args.api_version == "1.1":
            show(args, reply)
        else:
            message(args, f"Request to update {_noun(args)} {args.cluster} has been accepted.")
        if before is not None:
            return wait_for(client, str(before["uuid"]), view, "update", before=before)
    return 0


@api_command
def cmd_delete(args: argparse.Namespace) -> int:
    view = _view(args)
    failed = 0
    accepted: list[dict[str, Any]] = []
    with connect(args) as client:
        for ident in args.clusters:
            try:
                before = client.get_cluster(ident, view) if args.wait else {"uuid": ident}
                client.delete_cluster(ident, view)
            except ApiError as exc:
                failed += 1
                note(f"ERROR: Delete for {_noun(args)} {ident} failed: {exc.message}")
                continue
            accepted.append(before)
            message(args, f"Request to delete {_noun(args)} {ident} has been accepted.")
        if args.wait:
            for before in accepted:
                failed += wait_for(client, str(before["uuid"]), view, "delete", before=before)
    return 1 if failed else 0


@api_command
def cmd_resize(args: argparse.Namespace) -> int:
    with connect(args) as client:
        before = client.get_cluster(args.cluster, "clusters")
        uuid = str(before["uuid"])
        client.resize_cluster(uuid, args.node_count, args.nodes_to_remove, args.nodegroup)
        message(args, f"Request to resize cluster {args.cluster} has been accepted.")
        if args.wait:
            return wait_for(client, uuid, "clusters", "update", before=before)
    return 0


@api_command
def cmd_nodegroup_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "role": args.role, "limit": args.limit, "marker": args.marker, "sort_key": args.sort_key,
        "sort_dir": args.sort_dir,
    }  # fmt: skip
    with connect(args) as client:
        items = client.list_nodegroups(args.cluster, **params)
    table(args, items, extra_columns(NODEGROUP_COLUMNS, args.fields))
    return 0


# ----------------------------------------------------------------------------- registration

WAIT_HELP = "Wait until the operation ends, showing progress on stderr; exit 1 if it fails."


def _add_create(sub: Any, name: str, view: str) -> None:
    bay = view == "bays"
    noun = "bay" if bay else "cluster"
    p = sub.add_parser(
        name,
        help=f"Create a {noun}.",
        description=(
            f"Create a {noun} (POST /v1/{view}). The {'baymodel' if bay else 'cluster template'} is "
            "looked up first and sent by UUID, like python-magnumclient. The request is asynchronous: "
            "use --wait to follow it, or poll with the show command."
        ),
    )
    if bay:
        p.add_argument("--name", metavar="<name>", help="Name of the bay (generated when omitted).")
        p.add_argument("--baymodel", required=True, metavar="<baymodel>", help="ID or name of the baymodel.")
    else:
        p.add_argument("positional_name", metavar="<name>", nargs="?", help="Name of the cluster to create.")
        p.add_argument("--name", metavar="<name>", help="Name of the cluster (generated when omitted).")
        p.add_argument(
            "--cluster-template", required=True, metavar="<cluster_template>",
            help="ID or name of the cluster template.",
        )  # fmt: skip
        p.add_argument(
            "--keypair-id", "--keypair", dest="keypair", metavar="<keypair>",
            help="Name of the keypair for the nodes (default: the template's).",
        )  # fmt: skip
        p.add_argument(
            "--docker-volume-size", metavar="<docker-volume-size>", type=int,
            help="Docker volume size in GB (default: the template's).",
        )  # fmt: skip
        p.add_argument(
            "--labels", metavar=LABELS_METAVAR, action="append",
            help="Labels as key=value pairs (replace the template's unless --merge-labels); repeatable.",
        )  # fmt: skip
        p.add_argument("--master-flavor", metavar="<master-flavor>", help="Flavor of the masters.")
        p.add_argument("--flavor", metavar="<flavor>", help="Flavor of the worker nodes.")
        p.add_argument(
            "--master-lb-enabled", action="append_const", const=True, default=[], dest="master_lb_enabled",
            help="Put a load balancer in front of the masters (needed for --master-count > 1).",
        )  # fmt: skip
        p.add_argument(
            "--master-lb-disabled", action="append_const", const=False, dest="master_lb_enabled",
            help="No load balancer in front of the masters.",
        )  # fmt: skip
        p.add_argument(
            "--merge-labels", action="store_true", help="Merge --labels into the template's labels."
        )
        p.add_argument(
            "--floating-ip-enabled", action="append_const", const=True, default=[],
            dest="floating_ip_enabled", help="Give the nodes floating IPs.",
        )  # fmt: skip
        p.add_argument(
            "--floating-ip-disabled", action="append_const", const=False, dest="floating_ip_enabled",
            help="Do not give the nodes floating IPs.",
        )  # fmt: skip
    p.add_argument(
        "--node-count",
        metavar="<node-count>",
        type=int,
        default=1,
        help="Number of worker nodes (default 1).",
    )
    p.add_argument(
        "--master-count", metavar="<master-count>", type=int, default=1, help="Number of masters (default 1)."
    )
    p.add_argument(
        "--discovery-url", metavar="<discovery-url>", help="Custom discovery URL for node discovery."
    )
    p.add_argument(
        "--timeout", metavar="<timeout>", type=int, default=60,
        help=f"Timeout for the {noun} creation in minutes (default 60).",
    )  # fmt: skip
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(func=cmd_create, view=view)


def register(sub: Any) -> None:
    for prefix, view in (("bay", "bays"), ("cluster", "clusters")):
        noun = prefix
        _add_create(sub, f"{prefix}-create", view)

        p = sub.add_parser(
            f"{prefix}-list", help=f"List {noun}s.", description=f"List {noun}s (GET /v1/{view})."
        )
        add_list_flags(p, f"{noun}s", detail=False)
        p.set_defaults(func=cmd_list, view=view)

        p = sub.add_parser(
            f"{prefix}-show", help=f"Show a {noun}.",
            description=f"Show a {noun} as a Property/Value table (GET /v1/{view}/<ident>).",
        )  # fmt: skip
        p.add_argument("cluster", metavar=f"<{noun}>", help=f"ID or name of the {noun}.")
        p.add_argument(
            "--long", action="store_true",
            help=f"Also show the {'baymodel' if prefix == 'bay' else 'cluster template'}'s attributes.",
        )  # fmt: skip
        p.set_defaults(func=cmd_show, view=view)

        p = sub.add_parser(
            f"{prefix}-update",
            help=f"Update a {noun} (e.g. its node_count).",
            description=(
                f"Update a {noun} with a JSON patch (PATCH /v1/{view}/<ident>), e.g. "
                f"`flotilla {prefix}-update NAME replace node_count=3 --wait`."
            ),
        )
        p.add_argument("--rollback", action="store_true", help="Roll back the update if it fails.")
        add_update_args(p, "cluster", noun)
        p.add_argument("--wait", action="store_true", help=WAIT_HELP)
        p.set_defaults(func=cmd_update, view=view)

        p = sub.add_parser(
            f"{prefix}-delete", help=f"Delete {noun}s.",
            description=f"Delete one or more {noun}s (DELETE /v1/{view}/<ident>).",
        )  # fmt: skip
        p.add_argument("clusters", metavar=f"<{noun}>", nargs="+", help=f"IDs or names of the {noun}s.")
        p.add_argument(
            "--wait", action="store_true", help="Wait until the deletions end (the records are gone)."
        )
        p.set_defaults(func=cmd_delete, view=view)

        cluster_config.register_config(sub, f"{prefix}-config", view)

    p = sub.add_parser(
        "cluster-resize",
        help="Resize a nodegroup of a cluster.",
        description=(
            "Set the node count of a cluster's nodegroup (POST /v1/clusters/<uuid>/actions/resize), like "
            "`openstack coe cluster resize`. The default worker nodegroup is used unless --nodegroup is "
            "given."
        ),
    )
    p.add_argument("cluster", metavar="<cluster>", help="ID or name of the cluster.")
    p.add_argument("node_count", metavar="<node-count>", type=int, help="The new number of nodes.")
    p.add_argument(
        "--nodes-to-remove", metavar="<node>", action="append",
        help="Name or UUID of a node to remove when shrinking; repeatable.",
    )  # fmt: skip
    p.add_argument("--nodegroup", metavar="<nodegroup>", help="Name or UUID of the nodegroup to resize.")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(func=cmd_resize)

    p = sub.add_parser(
        "nodegroup-list",
        help="List the nodegroups of a cluster.",
        description="List the nodegroups of a cluster (GET /v1/clusters/<ident>/nodegroups).",
    )
    p.add_argument("cluster", metavar="<cluster>", help="ID or name of the cluster.")
    p.add_argument("--role", metavar="<role>", help="Only nodegroups with this role (master, worker).")
    add_list_flags(p, "nodegroups", detail=False)
    p.set_defaults(func=cmd_nodegroup_list)
