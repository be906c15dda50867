"""Kubernetes labels and cluster-wide constants (the guide's flannel labels).

Minimal version; the client-side helper ("kube-client") owns the full one."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from flotilla.errors import Invalid

FLANNEL_BACKENDS = ("vxlan", "udp", "host-gw")
#: vxlan works across nodes with Docker's --internal bridge rules in place (measured).
DEFAULT_FLANNEL_BACKEND = "vxlan"
DEFAULT_FLANNEL_CIDR = "10.100.0.0/16"
DEFAULT_SUBNETLEN = 24
DEFAULT_SERVICE_CIDR = "10.254.0.0/16"
DNS_SERVICE_IP = "10.254.0.10"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class FlannelSettings:
    backend: str
    network_cidr: str
    subnetlen: int


def flannel_settings(labels: Mapping[str, object]) -> FlannelSettings:
    backend = str(labels.get("flannel_backend") or DEFAULT_FLANNEL_BACKEND)
    if backend not in FLANNEL_BACKENDS:
        raise Invalid(
            f"flannel_backend {backend!r} is not supported; use one of {', '.join(FLANNEL_BACKENDS)}"
        )
    cidr = str(labels.get("flannel_network_cidr") or DEFAULT_FLANNEL_CIDR)
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise Invalid(f"flannel_network_cidr {cidr!r} is not an IPv4 network: {exc}") from exc
    raw = labels.get("flannel_network_subnetlen") or DEFAULT_SUBNETLEN
    try:
        subnetlen = int(str(raw))
    except ValueError as exc:
        raise Invalid(f"flannel_network_subnetlen {raw!r} is not a number") from exc
    if not net.prefixlen < subnetlen <= 28:
        raise Invalid(
            f"flannel_network_subnetlen {subnetlen} must be longer than the network's /{net.prefixlen} "
            "and at most 28"
        )
    return FlannelSettings(backend, str(net), subnetlen)
