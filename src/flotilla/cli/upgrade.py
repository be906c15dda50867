"""``cluster-upgrade``: ``openstack coe cluster upgrade`` (POST /v1/clusters/<uuid>/actions/upgrade,
API 1.8). The legacy magnum 2.17 shell has no such command; this follows OSC's."""

from __future__ import annotations

import argparse
from typing import Any

from flotilla.cli.clusters import WAIT_HELP, wait_for
from flotilla.cli.output import api_command, connect, message


@api_command
def cmd_upgrade(args: argparse.Namespace) -> int:
    with connect(args) as client:
        before = client.get_cluster(args.cluster, "clusters")
        uuid = str(before["uuid"])
        client.upgrade_cluster(uuid, args.cluster_template, args.max_batch_size, args.nodegroup)
        message(args, f"Request to upgrade cluster {args.cluster} has been accepted.")
        if args.wait:
            return wait_for(client, uuid, "clusters", "update", before=before)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster-upgrade",
        help="Upgrade a cluster to another cluster template.",
        description=(
            "Move a cluster to another cluster template (POST /v1/clusters/<uuid>/actions/upgrade), like "
            "`openstack coe cluster upgrade`. Kubernetes only, and only to the Kubernetes version built "
            "here (a template with that kube_tag, or none); any other version is refused, naming the "
            "versions available."
        ),
    )
    p.add_argument("cluster", metavar="<cluster>", help="ID or name of the cluster.")
    p.add_argument(
        "cluster_template", metavar="<cluster-template>", help="ID or name of the cluster template."
    )
    p.add_argument(
        "--max-batch-size", metavar="<max-batch-size>", type=int, default=1,
        help="The number of nodes upgraded at once (default 1).",
    )  # fmt: skip
    p.add_argument("--nodegroup", metavar="<nodegroup>", help="Name or UUID of the nodegroup to upgrade.")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(func=cmd_upgrade)
