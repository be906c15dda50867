"""What keeps the host safe from the nodes, for one engine: the nodes' device cgroup
(``devices.py``), the cluster networks' iptables rules (``firewall.py``), private
files, and the fill level of node volumes. The provider calls it; it decides what
applies to its engine (only an engine on this host can be guarded)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flotilla.domain import VolumeUsage

from . import devices, firewall, host
from .containers import LABEL_CLUSTER, LABEL_LOOP_FILE, LABEL_NODE, LABEL_ROUTED, label_filter
from .engine import Engine

log = logging.getLogger(__name__)


def network_subnet(net: Mapping[str, Any]) -> str:
    """The IPv4 subnet of a network (inspect or create-request form); "" if none."""
    for cfg in (net.get("IPAM") or {}).get("Config") or []:
        subnet = str(cfg.get("Subnet", ""))
        if subnet and ":" not in subnet:
            return str(ipaddress.IPv4Network(subnet, strict=False))
    return ""


class HostGuard:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The engine runs on this host (owned, or reached through a unix socket).
        self.local = engine.owned or engine.host.startswith("unix://")
        self.firewall = self.local and firewall.available()
        self._cgroup_parent: str | None = None

    # devices -------------------------------------------------------------------

    def device_cgroup(self) -> str | None:
        """The parent cgroup that denies host devices to nodes; None when the engine is not
        on this host or does not manage cgroups itself (systemd driver, cgroup v2), logged."""
        if self._cgroup_parent is None:
            parent = ""
            info = (self.engine.api.get("/info") or {}) if self.local else {}
            driver = str(info.get("CgroupDriver", ""))
            if driver == "cgroupfs":
                try:
                    parent = devices.ensure_parent_cgroup() or ""
                except PermissionError as exc:
                    log.warning("cannot set up the nodes' device cgroup (not root?): %s", exc)
            else:
                log.warning(
                    "engine %s (cgroup driver %r): nodes get no device cgroup parent; host devices are "
                    "only filtered from their /dev when the engine is Flotilla's own",
                    self.engine.host, driver or "unknown",
                )  # fmt: skip
            self._cgroup_parent = parent
        elif self._cgroup_parent:
            devices.ensure_parent_cgroup()  # cheap; rewrites the rules if the dir is new
        return self._cgroup_parent or None

    # networks ------------------------------------------------------------------

    def guard_network(self, net: Mapping[str, Any]) -> None:
        """Install the iptables rules of one of our networks (inspect or create-request form)."""
        if not self.firewall:
            return
        labels = net.get("Labels") or {}
        bridge = (net.get("Options") or {}).get("com.docker.network.bridge.name")
        subnet = network_subnet(net)
        if not bridge or not subnet:
            log.warning("network %s has no bridge name or subnet; no iptables rules", net.get("Name"))
            return
        firewall.ensure(
            firewall.NetworkRules(
                engine_id=self.engine.engine_id, cluster_uuid=str(labels.get(LABEL_CLUSTER, "")),
                network=str(net["Name"]), bridge=str(bridge), subnet=subnet,
                routed=labels.get(LABEL_ROUTED) == "true",
            )
        )  # fmt: skip

    def forget_network(self, cluster_uuid: str, name: str) -> None:
        if self.firewall:
            firewall.remove(engine_id=self.engine.engine_id, cluster_uuid=cluster_uuid, network=name)

    def restore_networks(self) -> None:
        """Rules for every cluster network of this engine (after a reboot, or networks made
        by a version that let dockerd manage iptables), and none for networks now gone."""
        if not self.firewall:
            return
        flt = json.dumps({"label": [LABEL_CLUSTER]})
        nets = [n for n in self.engine.api.get("/networks", filters=flt) or [] if n.get("Driver") == "bridge"]
        present = set()
        for net in nets:
            present.add((str((net.get("Labels") or {}).get(LABEL_CLUSTER, "")), str(net["Name"])))
            self.guard_network(net)
        for cluster, name in firewall.networks(self.engine.engine_id) - present:
            self.forget_network(cluster, name)

    # files and volumes ---------------------------------------------------------

    @staticmethod
    def tighten_files(data_dir: Path) -> None:
        """Volume images and node files written by older versions were world-readable."""
        host.private_dirs(data_dir)
        for sub in ("volumes", "nodes"):
            root = data_dir / sub
            if root.is_dir():
                host.private_dirs(root)
                for d in root.iterdir():
                    if d.is_dir():
                        host.private_dirs(d)
        for image in (data_dir / "volumes").glob("*/*.img"):
            host.private_file(image)

    def volume_usage(self, cluster_uuid: str | None) -> list[VolumeUsage]:
        """Fill level of the nodes' ``/var/lib/docker`` volumes, from one volume listing and a
        ``statvfs`` each: a sized volume's own filesystem while it is mounted, an unsized
        one's host filesystem. Empty when the engine is not on this host."""
        if not self.local:
            return []
        filters = json.dumps({"label": [label_filter(cluster_uuid), LABEL_NODE]})
        found: list[VolumeUsage] = []
        for vol in (self.engine.api.get("/volumes", filters=filters) or {}).get("Volumes") or []:
            labels = vol.get("Labels") or {}
            mountpoint = Path(str(vol.get("Mountpoint") or "/nonexistent"))
            sized = LABEL_LOOP_FILE in labels
            if not mountpoint.is_dir() or (sized and not mountpoint.is_mount()):
                continue  # a sized volume is mounted only while its node runs
            with contextlib.suppress(OSError):
                size, free = host.fs_usage(mountpoint)
                found.append(
                    VolumeUsage(str(labels.get(LABEL_CLUSTER)), str(labels.get(LABEL_NODE)), size, free)
                )
        return found
