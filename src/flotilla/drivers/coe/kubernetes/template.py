"""What a Kubernetes cluster template may ask for here, checked when the template is
created or changed (and again, with the node counts, when a cluster is created).

The generic rules (``services.template_rules``: the guide's driver tables, label
formats, storage minimums) run first; this adds what the Kubernetes driver itself
can honour. ``docker_storage_driver`` does not apply: Kubernetes nodes run
containerd, whose overlayfs snapshotter is used whatever the template says, so the
guide's values are accepted (python-magnumclient 2.17 sends devicemapper by default)
and ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from flotilla.drivers.coe.kubernetes.labels import (
    DEFAULT_FLANNEL_CIDR,
    DEFAULT_SERVICE_CIDR,
    DEFAULT_SUBNETLEN,
    FLANNEL_BACKENDS,
    VERSION_LABEL,
    same_version,
)
from flotilla.errors import Invalid

NETWORK_DRIVERS: tuple[str, ...] = ("flannel",)
#: The most masters (stacked etcd members) a cluster may have; the count must be odd.
MAX_MASTERS = 7
_PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
#: Flannel refuses subnets smaller than a /30 (SubnetLen must be less than /31).
_MAX_SUBNETLEN = 30


def validate_template(
    fields: Mapping[str, object], *, built_version: str | None, not_built_reason: str = ""
) -> None:
    """Raise :class:`Invalid` (400) naming what is wrong and what is accepted.

    ``built_version`` is the Kubernetes version the binaries were built at (None: not
    built, and ``not_built_reason`` says why and how to fix it). ``fields`` is the
    template's writable view; at cluster create it also holds ``master_count`` and
    ``node_count``, and then the flannel network must have a subnet for every node.
    """
    if built_version is None:
        raise Invalid(
            "Kubernetes clusters are not available on this Flotilla: "
            + (
                not_built_reason
                or "the Kubernetes binaries are not built: run scripts/build-kube.sh (or make setup)."
            )
        )
    _check_network_driver(fields.get("network_driver"))
    _check_volume_driver(fields.get("volume_driver"))
    raw = fields.get("labels")
    labels: Mapping[str, object] = raw if isinstance(raw, Mapping) else {}
    _check_version(labels.get(VERSION_LABEL), built_version)
    backend = labels.get("flannel_backend")
    if backend not in (None, "") and backend not in FLANNEL_BACKENDS:
        raise Invalid(
            f"Invalid label flannel_backend={backend}: expected one of {', '.join(FLANNEL_BACKENDS)} "
            "(default vxlan)."
        )
    _check_masters(fields.get("master_count"))
    network = _flannel_network(labels.get("flannel_network_cidr"))
    subnetlen = _subnetlen(labels.get("flannel_network_subnetlen"), network)
    nodes = _node_total(fields)
    subnets = 2 ** (subnetlen - network.prefixlen) - 1  # flannel never hands out the first subnet
    if nodes is not None and nodes > subnets:
        raise Invalid(
            f"The flannel network {network} split into /{subnetlen} subnets has room for {subnets} nodes, "
            f"but the cluster would have {nodes}: use a larger flannel_network_cidr or a larger "
            "flannel_network_subnetlen."
        )


def check_upgrade(
    current: Mapping[str, object],
    target: Mapping[str, object],
    *,
    built_version: str | None,
    not_built_reason: str = "",
) -> None:
    """An upgrade (``actions/upgrade``) may only name the built version (or leave
    ``kube_tag`` unset, which means it): a second built version and rolling upgrades are a
    later step, so the operation changes nothing on the nodes. The node image stays too."""
    if built_version is None:
        raise Invalid(
            "Kubernetes clusters cannot be upgraded here: " + (not_built_reason or "nothing is built.")
        )
    want, have = _version_of(target) or built_version, _version_of(current) or built_version
    if not same_version(want, built_version):
        # The first sentence is the error's title (all OSC prints): no version (dots) in it.
        raise Invalid(
            f"Cannot upgrade the cluster: the cluster template's {VERSION_LABEL} names a Kubernetes version "
            f"that is not available here. Asked for {want}; the Kubernetes versions available here are: "
            f"{built_version} (the one built); the cluster runs {have}. Use a template with "
            f"{VERSION_LABEL}={built_version} or without {VERSION_LABEL}."
        )
    if target.get("image_id") != current.get("image_id"):
        raise Invalid(
            f"Cannot upgrade the cluster to image {target.get('image_id')}: replacing the nodes' image "
            f"({current.get('image_id')}) is not supported yet; use a template with image_id "
            f"{current.get('image_id')}."
        )


def _version_of(fields: Mapping[str, object]) -> str | None:
    raw = fields.get("labels")
    value = raw.get(VERSION_LABEL) if isinstance(raw, Mapping) else None
    return str(value) if value not in (None, "") else None


def _check_masters(count: object) -> None:
    """Several masters run a stacked etcd cluster, which works while a majority (quorum) of
    its members does: an even count tolerates no more failures than one fewer, and a split
    in halves stops both. (master_count > 1 without master_lb_enabled is refused before.)"""
    if not isinstance(count, int) or count <= 1:
        return
    if count % 2 == 0:
        tolerated = (count - 1) // 2
        raise Invalid(
            f"master_count {count} is not supported for Kubernetes clusters: the masters run a stacked etcd "
            f"cluster, which needs a majority (quorum) of its members, {count // 2 + 1} of {count}, to work; "
            f"{count} masters survive no more failures ({tolerated}) than {count - 1} do, and a network split "
            f"into two halves stops both. Use an odd count: 1, 3, 5 or {MAX_MASTERS}."
        )
    if count > MAX_MASTERS:
        raise Invalid(
            f"master_count {count} is not supported for Kubernetes clusters: at most {MAX_MASTERS} masters "
            f"(every etcd member replicates every write). Use an odd count: 1, 3, 5 or {MAX_MASTERS}."
        )


def _check_network_driver(driver: object) -> None:
    if driver in (None, "") or driver in NETWORK_DRIVERS:
        return
    raise Invalid(
        f"Network driver {driver} is not supported for Kubernetes clusters here. "
        f"Supported network drivers: {', '.join(NETWORK_DRIVERS)} (the default when unset)."
    )


def _check_volume_driver(driver: object) -> None:
    if driver in (None, ""):
        return
    if driver == "cinder":
        raise Invalid(
            "Volume driver cinder needs OpenStack Cinder, which the local provider does not have "
            "(the OpenStack provider will bring it): leave volume_driver unset."
        )
    raise Invalid(
        f"Volume driver {driver} is not supported for Kubernetes clusters; leave volume_driver unset."
    )


def _check_version(label: object, built: str) -> None:
    if label in (None, ""):
        return
    if not same_version(str(label), built):
        raise Invalid(
            f"Invalid label {VERSION_LABEL}={label}: this Flotilla runs Kubernetes {built} only (the version "
            f"its binaries were built at). Use {VERSION_LABEL}={built} or leave the label unset."
        )


def _flannel_network(value: object) -> ipaddress.IPv4Network:
    text = DEFAULT_FLANNEL_CIDR if value in (None, "") else str(value)
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise Invalid(
            f"Invalid label flannel_network_cidr={text}: expected an IPv4 network in CIDR format, "
            f"e.g. {DEFAULT_FLANNEL_CIDR}."
        ) from None
    if "/" not in text:
        raise Invalid(f"Invalid label flannel_network_cidr={text}: give a prefix length, e.g. {text}/16.")
    try:
        ipaddress.IPv4Network(text)
    except ValueError:
        raise Invalid(
            f"Invalid label flannel_network_cidr={text}: host bits are set; did you mean {network}?"
        ) from None
    if not any(network.subnet_of(p) for p in _PRIVATE):
        raise Invalid(
            f"Invalid label flannel_network_cidr={text}: pods need a private network inside 10.0.0.0/8, "
            f"172.16.0.0/12 or 192.168.0.0/16 (default {DEFAULT_FLANNEL_CIDR})."
        )
    service = ipaddress.IPv4Network(DEFAULT_SERVICE_CIDR)
    if network.overlaps(service):
        raise Invalid(
            f"Invalid label flannel_network_cidr={text}: it overlaps the service network {service} "
            f"(ClusterIPs); choose a network outside it, e.g. {DEFAULT_FLANNEL_CIDR}."
        )
    return network


def _subnetlen(value: object, network: ipaddress.IPv4Network) -> int:
    if value in (None, ""):
        length = DEFAULT_SUBNETLEN
        if length <= network.prefixlen:
            raise Invalid(
                f"The flannel network {network} is too small for the default /{DEFAULT_SUBNETLEN} node "
                f"subnets: set flannel_network_subnetlen between {network.prefixlen + 1} and {_MAX_SUBNETLEN}, "
                "or use a larger flannel_network_cidr."
            )
        return length
    text = str(value).strip()
    if not text.isdigit():
        raise Invalid(f"Invalid label flannel_network_subnetlen={value}: expected an integer, e.g. 24.")
    length = int(text)
    if not network.prefixlen < length <= _MAX_SUBNETLEN:
        raise Invalid(
            f"Invalid label flannel_network_subnetlen={value}: each node's pod subnet must lie inside the "
            f"flannel network {network}, so expected an integer from {network.prefixlen + 1} to "
            f"{_MAX_SUBNETLEN}."
        )
    return length


def _node_total(fields: Mapping[str, object]) -> int | None:
    masters, workers = fields.get("master_count"), fields.get("node_count")
    if isinstance(masters, int) and isinstance(workers, int):
        return masters + workers
    return None
