"""What a node container looks like on the engine: its labels, its create request
(``docker run -d --privileged ...`` as the Engine API takes it), and how a container
reads back as a ``NodeInfo``. Pure functions; the provider does the calls."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from flotilla.domain import NodeInfo, NodeSpec
from flotilla.errors import Invalid

from .images import DOCKER_INIT

LABEL_CLUSTER = "flotilla.cluster"
LABEL_NODE = "flotilla.node"
LABEL_ROLE = "flotilla.role"
LABEL_NETWORK = "flotilla.network"
LABEL_VOLUME = "flotilla.volume"
#: The catalog flavor the node was made from (its cpus/memory are the container's limits).
LABEL_FLAVOR = "flotilla.flavor"
LABEL_LOOP_FILE = "flotilla.loop-file"
#: On a network: forward routed (non-node) addresses between its nodes (firewall.py).
LABEL_ROUTED = "flotilla.routed"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
FORBIDDEN_FILE_ROOTS = ("/proc", "/sys", "/dev")


def check_name(what: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise Invalid(f"{what} {value!r} is not valid: use 1-63 letters, digits, '_', '.' or '-'")
    return value


def file_mode(path: str) -> int:
    name = PurePosixPath(path).name
    # authorized_keys holds public keys and must be readable by the login user (sshd
    # reads it with the user's uid; a root-owned 0644 file passes StrictModes).
    return 0o600 if "key" in name and name != "authorized_keys" else 0o644


def volume_name(node: str) -> str:
    return f"{node}-docker"


def label_filter(cluster_uuid: str | None) -> str:
    """An API label filter: ``flotilla.cluster=<uuid>``, or any cluster."""
    return f"{LABEL_CLUSTER}={cluster_uuid}" if cluster_uuid else LABEL_CLUSTER


def owned_by(obj: Mapping[str, Any] | None, cluster_uuid: str) -> bool:
    """Whether a container/volume/network (inspect or list form) carries the cluster's label."""
    if obj is None:
        return False
    labels = obj.get("Labels")
    if labels is None:
        labels = (obj.get("Config") or {}).get("Labels")
    return isinstance(labels, dict) and labels.get(LABEL_CLUSTER) == cluster_uuid


def node_info(c: Mapping[str, Any]) -> NodeInfo:
    """From a container inspect, or a row of the container list (flatter: top-level
    ``Labels``, ``Names``, ``State`` as a string)."""
    labels: Mapping[str, str] = (c.get("Config") or {}).get("Labels") or c.get("Labels") or {}
    networks: Mapping[str, Any] = (c.get("NetworkSettings") or {}).get("Networks") or {}
    net_name = labels.get(LABEL_NETWORK)
    net = networks.get(net_name) if net_name else None
    if net is None and networks:
        net = next(iter(networks.values()))
    address: str | None = None
    if net:
        address = net.get("IPAddress") or ((net.get("IPAMConfig") or {}).get("IPv4Address")) or None
    state = c.get("State")
    status = state.get("Status") if isinstance(state, Mapping) else state
    name = c.get("Name") or (c.get("Names") or [""])[0]
    return NodeInfo(
        cluster_uuid=labels.get(LABEL_CLUSTER, ""),
        name=labels.get(LABEL_NODE) or str(name).lstrip("/"),
        role=labels.get(LABEL_ROLE, ""),
        address=address,
        state="running" if status == "running" else "stopped",
        provider_id=str(c.get("Id", "")),
    )


def validate_file_path(node: str, path: str, hostroot: bool) -> PurePosixPath:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or p == PurePosixPath("/"):
        raise Invalid(f"node {node}: file path {path!r} must be absolute without '..'")
    roots = (*FORBIDDEN_FILE_ROOTS, "/usr") if hostroot else FORBIDDEN_FILE_ROOTS
    for root in roots:
        if p == PurePosixPath(root) or PurePosixPath(root) in p.parents:
            raise Invalid(f"node {node}: cannot place a file at {path} (under {root})")
    return p


def create_body(
    spec: NodeSpec,
    hostroot: bool,
    volume: str,
    mounts: Sequence[tuple[Path, str]],
    resolv: Path,
    cgroup_parent: str | None = None,
) -> dict[str, Any]:
    """The container-create request for a node (what ``docker run -d --privileged ...`` sends).

    ``cgroup_parent``: the cgroup that denies host devices (see ``devices.py``). The
    cgroup namespace is always private, so a node cannot climb out of that parent.
    """
    binds = [f"{volume}:{spec.volume_path}"]
    if not any(path == "/etc/resolv.conf" for _, path in mounts):
        binds.append(f"{resolv}:/etc/resolv.conf:ro")
    if hostroot:
        binds.append("/usr:/usr:ro")
    host: dict[str, Any] = {
        "Privileged": True,
        "CgroupnsMode": "private",
        "NetworkMode": spec.network,
        "RestartPolicy": {"Name": "unless-stopped"},
        "Tmpfs": {"/run": "", "/tmp": ""},
        "LogConfig": {"Type": "", "Config": {"max-size": "10m", "max-file": "2"}},
        "Binds": binds,
        # Mounts, not Binds: node paths may hold colons (/etc/docker/certs.d/IP:5000/ca.crt).
        "Mounts": [{"Type": "bind", "Source": str(h), "Target": p, "ReadOnly": True} for h, p in mounts],
    }
    if cgroup_parent:
        host["CgroupParent"] = cgroup_parent
    if spec.cpus and spec.cpus > 0:
        host["NanoCpus"] = int(spec.cpus * 1e9)
    if spec.memory_mb and spec.memory_mb > 0:
        host["Memory"] = host["MemorySwap"] = spec.memory_mb * 1024 * 1024
    labels = {
        **spec.labels,
        LABEL_CLUSTER: spec.cluster_uuid,
        LABEL_NODE: spec.name,
        LABEL_ROLE: spec.role,
        LABEL_NETWORK: spec.network,
        LABEL_VOLUME: volume,
        **({LABEL_FLAVOR: spec.flavor} if spec.flavor else {}),
    }
    body: dict[str, Any] = {
        "Hostname": spec.name,
        "Image": spec.image_ref,
        "Env": [f"{k}={v}" for k, v in sorted(spec.env.items())],
        "Labels": labels,
        "HostConfig": host,
    }
    if spec.ip:
        body["NetworkingConfig"] = {
            "EndpointsConfig": {spec.network: {"IPAMConfig": {"IPv4Address": spec.ip}}}
        }
    command = list(spec.command)
    if hostroot:
        if command:
            body["Entrypoint"] = [DOCKER_INIT]
            body["Cmd"] = ["--", *command]
        # else: the image's ENTRYPOINT is docker-init already
    else:
        host["Init"] = True
        if command:
            body["Cmd"] = command
    return body
