"""Cluster networks of the local provider: a user-defined ``--internal`` bridge per
cluster with an explicit /24 from the provider's subnet pool and an explicit bridge name
(``flt<hash>``), guarded by the host's iptables rules (``guard.py``).

The host reaches the nodes through the bridge gateway; nothing a node sends can leave the
machine. A fixed network (``NetworkSpec.fixed_network``) is used as it is and never removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flotilla.domain import NetworkInfo, NetworkSpec
from flotilla.errors import Conflict, FlotillaError, NotFound

from . import host, nodefiles
from .containers import LABEL_CLUSTER, LABEL_NETWORK, LABEL_ROUTED, check_name, owned_by
from .engine_api import ApiError

if TYPE_CHECKING:
    from .provider import LocalProvider

log = logging.getLogger(__name__)

#: Subnets nodes use internally (inner docker0, docker_gwbridge, overlay pool).
RESERVED_SUBNETS = tuple(
    ipaddress.IPv4Network(n) for n in ("172.17.0.0/16", "172.18.0.0/16", "10.0.0.0/8", "127.0.0.0/8")
)


def network_info(net: Mapping[str, Any], owned: bool) -> NetworkInfo:
    """A ``docker network inspect`` body as the provider-neutral ``NetworkInfo`` (IPv4 only)."""
    configs = (net.get("IPAM") or {}).get("Config") or []
    subnet = gateway = ""
    for cfg in configs:
        if ":" not in str(cfg.get("Subnet", "")):
            subnet = str(cfg.get("Subnet", ""))
            gateway = str(cfg.get("Gateway", ""))
            break
    if subnet and not gateway:
        gateway = str(next(ipaddress.IPv4Network(subnet).hosts()))
    return NetworkInfo(name=str(net["Name"]), subnet=subnet, gateway=gateway, owned=owned)


def used_subnets(provider: LocalProvider) -> list[ipaddress.IPv4Network]:
    """Every subnet the engine's networks and this host's routes already use."""

    def docker_nets() -> list[ipaddress.IPv4Network]:
        nets: list[ipaddress.IPv4Network] = []
        for net in provider.api.get("/networks") or []:
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.IPv4Network(str(cfg.get("Subnet", "")), strict=False))
        return nets

    a, b = provider.parallel(docker_nets, host.routes)
    return [*a, *b]


def candidate_subnets(
    pool: ipaddress.IPv4Network, used: Iterable[ipaddress.IPv4Network]
) -> list[ipaddress.IPv4Network]:
    """The /24s (or the pool's own size, when smaller) of ``pool`` that overlap nothing used."""
    taken = [*used, *RESERVED_SUBNETS]
    new_prefix = max(24, pool.prefixlen)
    return [cand for cand in pool.subnets(new_prefix=new_prefix) if not any(cand.overlaps(t) for t in taken)]


def ensure(provider: LocalProvider, spec: NetworkSpec) -> NetworkInfo:
    """``LocalProvider.ensure_network`` (see there)."""
    check_name("cluster uuid", spec.cluster_uuid)
    if spec.fixed_network:
        net = provider.api.inspect("network", spec.fixed_network)
        if net is None:
            raise NotFound(f"fixed network {spec.fixed_network!r} does not exist in the Docker Engine")
        return network_info(net, owned=False)
    check_name("network name", spec.name)
    with provider.net_lock:
        net = provider.api.inspect("network", spec.name)
        if net is not None:
            if not owned_by(net, spec.cluster_uuid):
                raise Conflict(
                    f"network {spec.name!r} exists and does not belong to cluster {spec.cluster_uuid}"
                )
            provider.guard.guard_network(net)
            return network_info(net, owned=True)
        bridge = "flt" + hashlib.sha256(f"{spec.cluster_uuid}/{spec.name}".encode()).hexdigest()[:11]
        started = time.monotonic()
        for subnet in candidate_subnets(provider.subnet_pool, used_subnets(provider)):
            gateway = str(next(subnet.hosts()))
            body = {
                "Name": spec.name, "Driver": "bridge", "Internal": True, "CheckDuplicate": True,
                "IPAM": {"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
                "Options": {"com.docker.network.bridge.name": bridge},
                "Labels": {LABEL_CLUSTER: spec.cluster_uuid, LABEL_NETWORK: spec.name,
                           **({LABEL_ROUTED: "true"} if spec.routed else {})},
            }  # fmt: skip
            try:
                provider.api.request("POST", "/networks/create", body=body)
            except ApiError as exc:
                if "overlap" in exc.message.lower():
                    continue  # taken meanwhile (another process or engine)
                if "already exists" in exc.message:
                    net = provider.api.inspect("network", spec.name)
                    if net is not None and owned_by(net, spec.cluster_uuid):
                        provider.guard.guard_network(net)
                        return network_info(net, owned=True)
                raise
            provider.guard.guard_network({**body, "Name": spec.name})
            log.info(
                "cluster %s: network %s %s (bridge %s) created in %.2f s",
                spec.cluster_uuid,
                spec.name,
                subnet,
                bridge,
                time.monotonic() - started,
            )
            return NetworkInfo(name=spec.name, subnet=str(subnet), gateway=gateway, owned=True)
    raise FlotillaError(f"no free /24 left in the subnet pool {provider.subnet_pool} for network {spec.name}")


def delete(provider: LocalProvider, cluster_uuid: str, name: str) -> None:
    """``LocalProvider.delete_network`` (see there)."""
    net = provider.api.inspect("network", name)
    if net is not None and not owned_by(net, cluster_uuid):
        log.debug("cluster %s: network %s is not ours; keeping it", cluster_uuid, name)
        return
    if net is not None:
        provider.api.remove("network", name)
    provider.guard.forget_network(cluster_uuid, name)
    provider.addresses.forget_network(name)
    if net is None:
        return
    log.info("cluster %s: network %s removed", cluster_uuid, name)
    nodefiles.remove_empty_cluster_dirs(provider.data_dir, cluster_uuid)
