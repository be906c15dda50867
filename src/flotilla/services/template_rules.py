"""What the user guide allows per COE, as data, and the checks built on it."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from flotilla.errors import Invalid

COES: tuple[str, ...] = ("kubernetes", "swarm", "swarm-mode", "mesos", "docker")

#: The guide's network driver table (first entry is the default). Magnum also accepts
#: calico for kubernetes; the guide's table (and Flotilla's Kubernetes driver) has flannel only.
NETWORK_DRIVERS: dict[str, tuple[str, ...]] = {
    "kubernetes": ("flannel",),
    "swarm": ("docker", "flannel"),
    "swarm-mode": ("docker", "flannel"),
    "mesos": ("docker",),
    "docker": ("docker",),
}

#: The guide's volume driver table (no default: "No Driver").
VOLUME_DRIVERS: dict[str, tuple[str, ...]] = {
    "kubernetes": ("cinder",),
    "swarm": ("rexray",),
    "swarm-mode": ("rexray",),
    "mesos": ("rexray",),
    "docker": (),
}

#: docker_storage_driver -> minimum docker_volume_size (GB), per the guide.
STORAGE_DRIVER_MIN_GB: dict[str, int] = {"devicemapper": 3, "overlay": 1, "overlay2": 1}

SERVER_TYPES: tuple[str, ...] = ("vm", "bm")

_BOOL_LABELS = (
    "auto_healing_enabled",
    "master_lb_floating_ip_enabled",
    "kube_dashboard_enabled",
    "rexray_preempt",
)


def check_coe(coe: str) -> None:
    if coe not in COES:
        raise Invalid(f"Requested COE type {coe} is not supported. Supported COE types: {', '.join(COES)}.")


def default_network_driver(coe: str) -> str:
    return NETWORK_DRIVERS[coe][0]


def check_network_driver(coe: str, driver: str | None) -> None:
    if driver is None:
        return
    allowed = NETWORK_DRIVERS[coe]
    if driver not in allowed:
        raise Invalid(
            f"Network driver type {driver} is not supported for COE {coe}. "
            f"Supported network drivers: {', '.join(allowed)}."
        )


def check_volume_driver(coe: str, driver: str | None) -> None:
    if driver is None:
        return
    allowed = VOLUME_DRIVERS[coe]
    if driver not in allowed:
        supported = ", ".join(allowed) if allowed else "none"
        raise Invalid(
            f"Volume driver type {driver} is not supported for COE {coe}. Supported volume drivers: {supported}."
        )


def check_storage(driver: str | None, size: int | None) -> None:
    """The guide's minimums: devicemapper needs at least 3 GB, overlay 1 GB."""
    if driver is None:
        return
    if driver not in STORAGE_DRIVER_MIN_GB:
        raise Invalid(
            f"Docker storage driver {driver} is not supported. "
            f"Supported drivers: {', '.join(STORAGE_DRIVER_MIN_GB)}."
        )
    minimum = STORAGE_DRIVER_MIN_GB[driver]
    if driver == "devicemapper" and (size is None or size < minimum):
        raise Invalid(
            f"docker volume size {size} GB is not valid, expecting minimum value {minimum}GB for "
            f"{driver} storage driver."
        )
    if size is not None and size < minimum:
        raise Invalid(
            f"docker volume size {size} GB is not valid, expecting minimum value {minimum}GB for "
            f"{driver} storage driver."
        )


def check_server_type(value: str) -> None:
    if value not in SERVER_TYPES:
        raise Invalid(
            f"Invalid input for field/attribute server_type. Value: '{value}'. Expected one of: vm, bm"
        )


def check_labels(labels: Mapping[str, Any] | None) -> None:
    """Validate the labels the guide documents; unknown labels pass through."""
    if not labels:
        return
    cidr = labels.get("flannel_network_cidr")
    if cidr is not None:
        try:
            ipaddress.IPv4Network(str(cidr), strict=False)
            if "/" not in str(cidr):
                raise ValueError
        except ValueError:
            raise Invalid(
                f"Invalid label flannel_network_cidr={cidr}: expected an IPv4 network in CIDR format, "
                "e.g. 10.100.0.0/16."
            ) from None
    sublen = labels.get("flannel_network_subnetlen")
    if sublen is not None and (not str(sublen).isdigit() or not 1 <= int(str(sublen)) <= 32):
        raise Invalid(f"Invalid label flannel_network_subnetlen={sublen}: expected an integer from 1 to 32.")
    backend = labels.get("flannel_backend")
    if backend is not None and backend not in ("udp", "vxlan", "host-gw"):
        raise Invalid(f"Invalid label flannel_backend={backend}: expected one of udp, vxlan, host-gw.")
    strategy = labels.get("swarm_strategy")
    if strategy is not None and strategy not in ("spread", "binpack", "random"):
        raise Invalid(f"Invalid label swarm_strategy={strategy}: expected one of spread, binpack, random.")
    for key in _BOOL_LABELS:
        v = labels.get(key)
        if v is not None and str(v).lower() not in ("true", "false"):
            raise Invalid(f"Invalid label {key}={v}: expected true or false.")
    for key in ("mesos_slave_isolation", "mesos_slave_image_providers", "mesos_slave_executor_env_variables"):
        v = labels.get(key)
        if v is not None and key == "mesos_slave_executor_env_variables":
            try:
                json.loads(str(v))
            except ValueError:
                raise Invalid(f"Invalid label {key}={v}: expected a JSON object.") from None
    for key in ("min_node_count", "max_node_count"):
        v = labels.get(key)
        if v is not None and not str(v).isdigit():
            raise Invalid(f"Invalid label {key}={v}: expected a non-negative integer.")


def check_dns(value: str, *, single: bool) -> None:
    """Baymodels take one IPv4 address; cluster templates a comma-separated list."""
    parts = [value] if single else [p.strip() for p in value.split(",")]
    try:
        for part in parts:
            ipaddress.IPv4Address(part)
    except ValueError:
        if single:
            raise Invalid(
                f"Invalid input for field/attribute dns_nameserver. Value: '{value}'. Value should be IPv4 format"
            ) from None
        raise Invalid(
            f"Expected a single dns address or comma separated dns list, but received {value}."
        ) from None
