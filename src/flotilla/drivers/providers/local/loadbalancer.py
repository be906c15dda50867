"""Load balancers of the local provider: haproxy (TCP, TLS passes through) in a node
container of role ``lb`` on the cluster network, run from the cluster's node image.

The configuration is one file bind-mounted into the node; a changed listener or member
list rewrites it and reloads haproxy gracefully: haproxy runs in master-worker mode
(``-W``), SIGUSR2 makes the master start new workers on the new configuration while the
old ones finish the connections they carry (at most ``hard-stop-after``), so no client
is cut off and the listening sockets never close. A balancer made before this mode
(no ``-W`` in its command) is restarted instead. The node's address is the provider's
choice (``.5`` while free) and survives both.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flotilla.domain import LoadBalancerInfo, LoadBalancerSpec, NodeInfo, NodeSpec
from flotilla.errors import Invalid

from .engine_api import quoted

if TYPE_CHECKING:
    from .provider import LocalProvider

log = logging.getLogger(__name__)

CONFIG = "/etc/haproxy/haproxy.cfg"
#: Master-worker mode in the foreground: SIGUSR2 reloads the configuration.
COMMAND = ("haproxy", "-W", "-db", "-f", CONFIG)


def haproxy_cfg(spec: LoadBalancerSpec) -> bytes:
    """The haproxy configuration: one frontend and backend per listener."""
    parts = [
        # Workers of a replaced configuration finish their connections (API watches last
        # minutes) for at most this long after a reload.
        "global\n  maxconn 2000\n  hard-stop-after 10m\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n"
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
            network=spec.network, cpus=0.5, memory_mb=256, command=list(COMMAND),
            files={CONFIG: cfg},
        )
    )  # fmt: skip
    on_host = provider.node_file(spec.cluster_uuid, spec.name, CONFIG)
    if not on_host.is_file() or on_host.read_bytes() != cfg:
        provider.put_files(node, {CONFIG: cfg})
        reload(provider, spec.name, node)
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


def reload(provider: LocalProvider, name: str, node: NodeInfo) -> None:
    """Make haproxy read its rewritten configuration: SIGUSR2 to the master (through the
    container's init, which forwards it) when it runs in master-worker mode, else (an
    older balancer) a restart."""
    container = provider.api.inspect("container", name) or {}
    if "-W" in ((container.get("Config") or {}).get("Cmd") or []):
        provider.api.request("POST", f"/containers/{quoted(name)}/kill", params={"signal": "SIGUSR2"})
        log.info("load balancer %s: configuration reloaded", name)
    else:
        provider.restart_node(node)
        log.info("load balancer %s: restarted with its new configuration (no master-worker mode)", name)
