"""Which host devices a node may use: the one list, and how it is enforced.

Nodes are privileged containers (an inner dockerd needs mounts, cgroups and iptables),
and Docker gives a privileged container every host device. A cluster user, root in
the node, could then read and write the host's disks. Two layers stop that:

* **the device cgroup** (cgroup v1): nodes run under the parent cgroup
  ``/flotilla`` (``HostConfig.CgroupParent``), whose ``devices`` controller denies
  read/write on every block device and on every character device not in
  :data:`NODE_DEVICES`. A child cgroup can never allow what its parent denies, so
  neither ``mknod`` in the node, nor writing the node's own ``devices.allow``, nor an
  inner ``docker run --device``/``--privileged`` brings a host disk back. Nodes also
  get a private cgroup namespace, so mounting the cgroup filesystem inside shows the
  node's own cgroup as the root: a node cannot move itself out of ``/flotilla``.
  ``mknod`` itself stays allowed (``m``): every inner container's runc asks for
  ``b *:* m`` and would fail otherwise; a node made with it cannot be opened.
* **the container spec**: the OCI runtime wrapper (``runc-capfix.sh``, installed for
  the owned engine) drops from a privileged container's ``/dev`` every device node
  that is not in :data:`NODE_DEVICES`, so nodes do not even see host disks.

Loop devices are not needed: a sized node volume is a loop device the *host* engine
attaches and mounts; the node sees the mounted filesystem only. Exposing ``/dev/loop*``
would let one cluster read another's volume.

To give nodes another device (the Kubernetes node type needs ``/dev/kmsg`` and
``/dev/net/tun``, both here), add it to :data:`NODE_DEVICES`; both layers follow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

#: The cgroup (under each controller's root) that every node container runs below.
CGROUP_PARENT = "/flotilla"
DEVICES_ROOT = Path("/sys/fs/cgroup/devices")
#: Character device majors the kernel can register (CHRDEV_MAJOR_MAX).
_CHAR_MAJORS = 512
#: Minors listed one by one for majors that are partly allowed (misc minors above 255
#: are dynamic and come from /proc/misc).
_MINORS = 256


@dataclass(frozen=True)
class Device:
    """A device node a node container may open. ``minor`` None: every minor."""

    kind: Literal["c", "b"]
    major: int
    minor: int | None
    path: str
    why: str


#: Every device a node may open. Everything else on the host is denied.
NODE_DEVICES: tuple[Device, ...] = (
    Device("c", 1, 3, "/dev/null", "basic"),
    Device("c", 1, 5, "/dev/zero", "basic"),
    Device("c", 1, 7, "/dev/full", "basic"),
    Device("c", 1, 8, "/dev/random", "basic"),
    Device("c", 1, 9, "/dev/urandom", "basic"),
    Device("c", 1, 11, "/dev/kmsg", "kubelet, kube-proxy and dockerd read the kernel log"),
    Device("c", 5, 0, "/dev/tty", "terminals of docker exec -t"),
    Device("c", 5, 1, "/dev/console", "the container's console"),
    Device("c", 5, 2, "/dev/ptmx", "pseudo-terminals"),
    *(Device("c", major, None, "/dev/pts/*", "pseudo-terminals") for major in range(128, 144)),
    Device("c", 10, 200, "/dev/net/tun", "overlay networks (flannel udp), VPNs"),
    Device("c", 10, 229, "/dev/fuse", "fuse-overlayfs and FUSE workloads"),
)


def allowed(kind: str, major: int, minor: int, devices: tuple[Device, ...] = NODE_DEVICES) -> bool:
    """Whether a node may open the device ``kind major:minor``."""
    return any(d.kind == kind and d.major == major and (d.minor is None or d.minor == minor) for d in devices)


def _misc_minors() -> set[int]:
    minors: set[int] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/misc").read_text().splitlines():
            with contextlib.suppress(ValueError, IndexError):
                minors.add(int(line.split()[0]))
    return minors


def deny_rules(devices: tuple[Device, ...] = NODE_DEVICES) -> list[str]:
    """The ``devices.deny`` lines of the parent cgroup: ``rw`` (not ``m``, see above) on
    every block device and every character device not in ``devices``."""
    rules = ["b *:* rw"]
    partly = {d.major for d in devices if d.kind == "c" and d.minor is not None}
    whole = {d.major for d in devices if d.kind == "c" and d.minor is None}
    for major in range(_CHAR_MAJORS):
        if major in whole:
            continue
        if major not in partly:
            rules.append(f"c {major}:* rw")
            continue
        minors = set(range(_MINORS)) | (_misc_minors() if major == 10 else set())
        rules += [
            f"c {major}:{minor} rw" for minor in sorted(minors) if not allowed("c", major, minor, devices)
        ]
    return rules


def wrapper_allowlist(devices: tuple[Device, ...] = NODE_DEVICES) -> str:
    """``NODE_DEVICES`` as JSON for the OCI runtime wrapper: ``[["c", 1, 3], ["c", 136, null], ...]``."""
    return json.dumps([[d.kind, d.major, d.minor] for d in devices])


_LOCK = threading.Lock()
#: inode of the parent cgroup dir we last wrote the rules into (a new dir has none).
_written: dict[Path, int] = {}


def ensure_parent_cgroup(root: Path = DEVICES_ROOT, name: str = CGROUP_PARENT) -> str | None:
    """Create the nodes' parent cgroup with the deny rules; return its path for
    ``HostConfig.CgroupParent``, or None when this host has no cgroup v1 ``devices``
    controller (cgroup v2: only the spec layer applies; logged).

    Idempotent and cheap when nothing changed (the rules are rewritten when the
    directory is new, e.g. after a reboot). Raises ``OSError`` when a rule cannot be
    written (not root).
    """
    if not (root / "devices.deny").exists():
        log.warning(
            "no cgroup v1 devices controller at %s: node containers are not denied host devices by "
            "their cgroup (only their /dev is filtered)",
            root,
        )
        return None
    path = root / name.strip("/")
    with _LOCK:
        path.mkdir(exist_ok=True)
        inode = path.stat().st_ino
        if _written.get(path) == inode:
            return name
        fd = os.open(path / "devices.deny", os.O_WRONLY)
        try:
            for rule in deny_rules():
                os.write(fd, rule.encode())
        finally:
            os.close(fd)
        _written[path] = inode
    log.info("node device cgroup %s ready (%s)", name, path)
    return name
