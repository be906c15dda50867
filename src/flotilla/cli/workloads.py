"""``cluster-image-load``: put a container image on every node of a cluster.

Nodes cannot pull (no registry is reachable here), so the image travels as an archive
(``docker save`` format) to the server, which records it for the cluster; the
conductor imports it into every node with the COE driver's command (``docker load``
for docker COEs, ``ctr -n k8s.io images import`` for Kubernetes), and into nodes added
later. The command waits until every node has it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from flotilla.cli import image_archive
from flotilla.cli.main import CliError
from flotilla.cli.output import api_command, connect

POLL = 0.5


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster-image-load",
        help="Load a container image into every node of a cluster (nodes cannot pull).",
        description=(
            "Load a container image into every node of a cluster, and into nodes added later. IMAGE is a "
            "tarball made by `docker save` (loaded as is), a root filesystem tarball (give --tag), or the "
            "word `busybox`, which builds a tiny busybox:local image from Debian's busybox-static."
        ),
    )
    p.add_argument("cluster", metavar="CLUSTER", help="Cluster (or bay) name or uuid.")
    p.add_argument("image", metavar="IMAGE", help="Path to an image tarball, or `busybox`.")
    p.add_argument("--tag", help="Tag for a root filesystem tarball (default busybox:local for `busybox`).")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="Seconds to wait for every node to have it (default 600).",
    )
    p.set_defaults(func=cmd_image_load)


@api_command
def cmd_image_load(args: argparse.Namespace) -> int:
    archive, name = _archive(args)
    client = connect(args)
    cluster = client.get_cluster(args.cluster)
    uuid = str(cluster["uuid"])
    recorded = client.load_cluster_image(uuid, archive, name)
    sha = recorded["sha256"]
    deadline = time.monotonic() + args.timeout
    reported: set[str] = set()
    while True:
        nodes: dict[str, str] = next(
            (i["nodes"] for i in client.list_cluster_images(uuid)["images"] if i["sha256"] == sha), {}
        )
        for node, state in nodes.items():
            if state == "loaded" and node not in reported:
                reported.add(node)
                print(f"loaded into {node}", file=sys.stderr)
        failed = {n: s for n, s in nodes.items() if s.startswith("failed")}
        if failed:
            detail = "; ".join(f"{n}: {s.removeprefix('failed: ')}" for n, s in failed.items())
            raise CliError(f"the image could not be loaded into every node of {args.cluster}: {detail}")
        if nodes and all(s == "loaded" for s in nodes.values()):
            break
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{n} ({s})" for n, s in nodes.items() if s != "loaded") or "no nodes yet"
            raise CliError(
                f"timed out after {args.timeout:g} s waiting for {waiting}; the server keeps loading it "
                "(it is recorded for the cluster and reaches nodes added later too)."
            )
        time.sleep(POLL)
    print(name)
    return 0


def _archive(args: argparse.Namespace) -> tuple[bytes, str]:
    """(an archive in ``docker save`` format, the name to show)."""
    if args.image == "busybox":
        from flotilla.drivers.providers.local.images import busybox_tarball

        tag = args.tag or "busybox:local"
        return image_archive.from_rootfs(busybox_tarball(), tag, cmd=["sh"]), tag
    path = Path(args.image)
    if not path.is_file():
        raise CliError(f"{args.image}: no such file (give an image tarball or `busybox`).")
    data = path.read_bytes()
    if args.tag:
        return image_archive.from_rootfs(data, args.tag), args.tag
    if not image_archive.is_docker_archive(data):
        raise CliError(
            f"{args.image} is not a `docker save` archive (no manifest.json); for a root filesystem "
            "tarball give --tag NAME:TAG."
        )
    return data, path.name
