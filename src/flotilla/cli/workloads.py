"""``cluster-image-load``: put a container image on every node of a cluster.

Nodes cannot pull (no registry is reachable here), so images travel from this
machine to each node's Docker daemon over the cluster's TLS endpoint, with a
client certificate signed through the API, exactly as the user's ``docker`` would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flotilla.cli.main import CliError
from flotilla.cli.output import api_command, connect
from flotilla.domain import TlsMaterial


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster-image-load",
        help="Load a container image into every node of a cluster (nodes cannot pull).",
        description=(
            "Load a container image into every node of a cluster. IMAGE is a tarball made by "
            "`docker save` (loaded as is), a root filesystem tarball (imported; give --tag), or the word "
            "`busybox`, which builds a tiny busybox:local image from Debian's busybox-static."
        ),
    )
    p.add_argument("cluster", metavar="CLUSTER", help="Cluster (or bay) name or uuid.")
    p.add_argument("image", metavar="IMAGE", help="Path to an image tarball, or `busybox`.")
    p.add_argument("--tag", help="Tag for a root filesystem tarball (default busybox:local for `busybox`).")
    p.set_defaults(func=cmd_image_load)


def _client_tls(client: Any, cluster_uuid: str) -> TlsMaterial:
    from flotilla.certs.authority import generate_csr

    csr, key = generate_csr()
    ca = client.get_ca(cluster_uuid)["pem"]
    cert = client.sign_csr(cluster_uuid, csr)["pem"]
    return TlsMaterial(ca_pem=ca + "\n", cert_pem=cert + "\n", key_pem=key)


@api_command
def cmd_image_load(args: argparse.Namespace) -> int:
    from flotilla.drivers.coe import dockerapi

    client = connect(args)
    cluster = client.get_cluster(args.cluster)
    if not cluster.get("api_address"):
        raise CliError(f"cluster {args.cluster} has no api_address yet (status {cluster.get('status')}).")
    template = client.get_template(cluster["cluster_template_id"])
    tls = None if template.get("tls_disabled") else _client_tls(client, cluster["uuid"])
    port = cluster["api_address"].rsplit(":", 1)[1]
    addresses = list(
        dict.fromkeys([*cluster.get("master_addresses", []), *cluster.get("node_addresses", [])])
    )
    data, mode, tag = _payload(args)
    for ip in addresses:
        with dockerapi.client(f"tcp://{ip}:{port}", tls, timeout=120) as c:
            if mode == "load":
                r = c.post("/images/load", content=data, headers={"Content-Type": "application/x-tar"})
            else:
                repo, _, version = tag.partition(":")
                r = c.post(
                    "/images/create",
                    params={"fromSrc": "-", "repo": repo, "tag": version or "latest"},
                    content=data,
                    headers={"Content-Type": "application/x-tar"},
                )
            if r.status_code >= 300:
                raise CliError(f"node {ip}: the daemon refused the image: {r.text.strip()[:300]}")
        print(f"loaded into {ip}", file=sys.stderr)
    print(tag if mode == "import" else Path(args.image).name)
    return 0


def _payload(args: argparse.Namespace) -> tuple[bytes, str, str]:
    """(bytes, "load"|"import", tag)."""
    if args.image == "busybox":
        from flotilla.drivers.providers.local.images import busybox_tarball

        return busybox_tarball(), "import", args.tag or "busybox:local"
    path = Path(args.image)
    if not path.is_file():
        raise CliError(f"{args.image}: no such file (give an image tarball or `busybox`).")
    data = path.read_bytes()
    if args.tag:
        return data, "import", args.tag
    return data, "load", ""
