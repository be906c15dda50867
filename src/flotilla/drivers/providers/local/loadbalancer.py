"""Load balancers of the local provider: haproxy (TCP, TLS passes through) in a node
container of role ``lb`` on the cluster network, run from the cluster's node image.

The configuration is one file bind-mounted into the node; a changed listener or member
list rewrites it and restarts haproxy (a second or so; clients reconnect). The node's
address is the provider's choice (``.5`` while free) and survives the rewrite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flotilla.domain import LoadBalancerInfo, LoadBalancerSpec, NodeSpec
from flotilla.errors import Invalid

if TYPE_CHECKING:
    from .provider import LocalProvider

CONFIG = "/etc/haproxy/haproxy.cfg"


def haproxy_cfg(spec: LoadBalancerSpec) -> bytes:
    """The haproxy configuration: one frontend and backend per listener."""
    parts = [
        "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n"
        "  timeout server 1h\n"
        # A member that just died (its health checks have not failed twice yet): retry the
        # connection on another member instead of failing the client's.
        "  retries 3\n  option redispatch 1\n"
    ]
    for lst in spec.listeners:
        servers = "".join(
            f"  server m{i} {addr}:{lst.backend_port} check inter 1s fall 2 rise 1\n"
            for i, addr in enumerate(lst.members)
        )
        parts.append(
            f"frontend l{lst.port}\n  bind :{lst.port}\n  default_backend b{lst.port}\n"
            f"backend b{lst.port}\n  balance roundrobin\n{servers}"
        )
    return "".join(parts).encode()


def ensure(provider: LocalProvider, spec: LoadBalancerSpec) -> LoadBalancerInfo:
    if not spec.image_ref:
        raise Invalid(f"load balancer {spec.name}: the local provider needs an image_ref to run haproxy from")
    cfg = haproxy_cfg(spec)
    node = provider.ensure_node(
        NodeSpec(
            cluster_uuid=spec.cluster_uuid, name=spec.name, role="lb", image_ref=spec.image_ref,
            network=spec.network, cpus=0.5, memory_mb=256, command=["haproxy", "-db", "-f", CONFIG],
            files={CONFIG: cfg},
        )
    )  # fmt: skip
    on_host = provider.node_file(spec.cluster_uuid, spec.name, CONFIG)
    if not on_host.is_file() or on_host.read_bytes() != cfg:
        provider.put_files(node, {CONFIG: cfg})
        provider.restart_node(node)
    return LoadBalancerInfo(name=spec.name, address=node.address, provider_id=node.provider_id)


def find(provider: LocalProvider, cluster_uuid: str, name: str) -> LoadBalancerInfo | None:
    for node in provider.list_nodes(cluster_uuid):
        if node.name == name and node.role == "lb":
            return LoadBalancerInfo(name=name, address=node.address, provider_id=node.provider_id)
    return None


def list_all(provider: LocalProvider, cluster_uuid: str) -> list[LoadBalancerInfo]:
    """Every balancer of the cluster: its node containers of role ``lb`` (one listing)."""
    return [
        LoadBalancerInfo(name=node.name, address=node.address, provider_id=node.provider_id)
        for node in provider.list_nodes(cluster_uuid)
        if node.role == "lb"
    ]
