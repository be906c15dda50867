"""What the user guide allows per COE, as data, and the checks built on it."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flotilla import healing
from flotilla.drivers.base import CoeDriver
from flotilla.drivers.registry import installed_coe_drivers
from flotilla.errors import Invalid

#: COEs Magnum's API accepts in templates that no Flotilla driver serves (a cluster of one
#: is refused at create, as Magnum refuses a COE without a driver): the guide's network and
#: volume driver table rows for them. Every other COE's rows come from its driver
#: (``CoeDriver.network_drivers`` / ``volume_drivers``), so a new COE edits nothing here.
UNSERVED_COES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {"mesos": (("docker",), ("rexray",))}


@dataclass(frozen=True)
class CoeChoices:
    """What a template of one COE may name: network drivers (the first is the default) and
    volume drivers (none: "No Driver" only)."""

    network_drivers: tuple[str, ...]
    volume_drivers: tuple[str, ...]


def coe_choices(drivers: Iterable[CoeDriver] | None = None) -> dict[str, CoeChoices]:
    """Every COE a template may name, with its choices: the drivers' (default: every
    installed driver, enabled or not) and the :data:`UNSERVED_COES`, sorted by COE.

    Do not change the answer: for the installed drivers it is kept (a template write
    asks four times)."""
    if drivers is None:
        installed = installed_coe_drivers()
        if _INSTALLED and _INSTALLED[0][0] == installed:
            return _INSTALLED[0][1]
        out = _choices(installed)
        _INSTALLED[:] = [(installed, out)]
        return out
    return _choices(drivers)


def _choices(drivers: Iterable[CoeDriver]) -> dict[str, CoeChoices]:
    out = {coe: CoeChoices(*rows) for coe, rows in UNSERVED_COES.items()}
    for driver in drivers:
        for coe in driver.coes:
            out[coe] = CoeChoices(tuple(driver.network_drivers), tuple(driver.volume_drivers))
    return dict(sorted(out.items()))


#: :func:`coe_choices` of the installed drivers, with the drivers it was made from (one slot).
_INSTALLED: list[tuple[tuple[CoeDriver, ...], dict[str, CoeChoices]]] = []


#: docker_storage_driver -> minimum docker_volume_size (GB), per the guide.
STORAGE_DRIVER_MIN_GB: dict[str, int] = {"devicemapper": 3, "overlay": 1, "overlay2": 1}

#: What the local provider really runs for each requested docker_storage_driver: its nodes
#: are containers keeping Docker's data on a dedicated sized volume (an ext4 image), where
#: only overlay2 works. devicemapper is the guide's (and magnum 2.17's) default, so it is
#: served rather than refused; the template then shows the driver actually used.
LOCAL_STORAGE_DRIVERS: dict[str, str] = {
    "devicemapper": "overlay2",
    "overlay": "overlay2",
    "overlay2": "overlay2",
}

SERVER_TYPES: tuple[str, ...] = ("vm", "bm")

_BOOL_LABELS = (
    "auto_healing_enabled",
    "master_lb_floating_ip_enabled",
    "kube_dashboard_enabled",
    "rexray_preempt",
)


@dataclass(frozen=True)
class LabelLimits:
    """How many labels a template or cluster may carry and how long keys and values may be
    (characters); built from Settings (``max_labels``, ``max_label_key_length``,
    ``max_label_value_length``), whose defaults these repeat."""

    max_labels: int = 100
    max_key_length: int = 255
    max_value_length: int = 8192


def check_label_limits(labels: Mapping[str, Any], limits: LabelLimits) -> None:
    """Raises Invalid naming the limit (and the setting that raises it) that ``labels`` passes."""
    if len(labels) > limits.max_labels:
        raise Invalid(
            f"Too many labels: {len(labels)} given, at most {limits.max_labels} are accepted "
            "(the operator sets max_labels)."
        )
    for key, value in labels.items():
        if len(str(key)) > limits.max_key_length:
            raise Invalid(
                f"Label key {str(key)[:40]}... is {len(str(key))} characters long; at most "
                f"{limits.max_key_length} are accepted (the operator sets max_label_key_length)."
            )
        if len(str(value)) > limits.max_value_length:
            raise Invalid(
                f"The value of label {str(key)[:255]} is {len(str(value))} characters long; at most "
                f"{limits.max_value_length} are accepted (the operator sets max_label_value_length)."
            )


def check_coe(coe: str) -> None:
    coes = coe_choices()
    if coe not in coes:
        raise Invalid(f"Requested COE type {coe} is not supported. Supported COE types: {', '.join(coes)}.")


def default_network_driver(coe: str) -> str:
    """The COE's default network driver (call after :func:`check_coe`)."""
    return coe_choices()[coe].network_drivers[0]


def check_network_driver(coe: str, driver: str | None) -> None:
    if driver is None:
        return
    allowed = coe_choices()[coe].network_drivers
    if driver not in allowed:
        raise Invalid(
            f"Network driver type {driver} is not supported for COE {coe}. "
            f"Supported network drivers: {', '.join(allowed)}."
        )


def check_volume_driver(coe: str, driver: str | None) -> None:
    if driver is None:
        return
    allowed = coe_choices()[coe].volume_drivers
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


@dataclass(frozen=True)
class VolumeLimits:
    """Bounds on ``docker_volume_size``: a setting for every provider, and what the
    provider can give a node now (``capacity_gb(provider name)``, e.g. its free space)."""

    maximum_gb: int | None = None
    capacity_gb: Callable[[str], int | None] | None = None

    def check(self, size: int | None, provider: str) -> None:
        """Raise ``Invalid`` (400) when ``size`` GB is more than allowed or available."""
        if size is None:
            return
        if self.maximum_gb is not None and size > self.maximum_gb:
            raise Invalid(
                f"docker volume size {size} GB is more than this service allows: at most {self.maximum_gb} GB "
                "(the max_docker_volume_size setting)."
            )
        free = self.capacity_gb(provider) if self.capacity_gb is not None else None
        if free is not None and size > free:
            raise Invalid(
                f"docker volume size {size} GB is more than the {provider} provider can give a node: {free} GB "
                "free where node volumes are kept."
            )


def served_storage_driver(provider: str | None, requested: str | None) -> str | None:
    """The docker_storage_driver ``provider`` actually uses for ``requested`` (call after
    :func:`check_storage`, which applies the guide's size minimums to the request)."""
    if provider != "local" or requested is None:
        return requested
    return LOCAL_STORAGE_DRIVERS.get(requested, requested)


def check_server_type(value: str) -> None:
    if value not in SERVER_TYPES:
        raise Invalid(
            f"Invalid input for field/attribute server_type. Value: '{value}'. Expected one of: vm, bm"
        )


def check_labels(labels: Mapping[str, Any] | None, limits: LabelLimits | None = None) -> None:
    """Validate the labels the guide documents (unknown labels pass through) and the
    operator's caps on their number and size (``limits``, the defaults when None)."""
    if not labels:
        return
    check_label_limits(labels, limits or LabelLimits())
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
    healing.check_labels(labels)


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
