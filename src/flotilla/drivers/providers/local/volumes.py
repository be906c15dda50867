"""Node volumes of the local provider: each node keeps its data (``/var/lib/docker``, or
``NodeSpec.volume_path``) on a named, labelled volume ``<node>-docker``. With
``NodeSpec.volume_gb`` the volume is a loop-mounted ext4 in a sparse file
``DATA_DIR/volumes/<cluster>/<node>.img`` (the engine must run on this host).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flotilla.domain import NodeSpec
from flotilla.errors import Conflict

from . import host
from .containers import LABEL_CLUSTER, LABEL_LOOP_FILE, LABEL_NODE, owned_by, volume_name

if TYPE_CHECKING:
    from .provider import LocalProvider

log = logging.getLogger(__name__)


def loop_file(data_dir: Path, cluster_uuid: str, name: str) -> Path:
    """The sparse file behind a sized node volume."""
    return data_dir / "volumes" / cluster_uuid / f"{name}.img"


def free_gb(data_dir: Path) -> int:
    """Free GiB where sized node volumes live (``DATA_DIR/volumes``); needs no engine."""
    return host.free_gib(Path(data_dir) / "volumes")


def ensure(provider: LocalProvider, spec: NodeSpec) -> str:
    """Create the node's labelled data volume (sized when ``volume_gb``); return its name.

    Idempotent; a sized volume whose loop device is stale is recreated on the same file.
    ``Conflict`` when a volume of that name belongs to another cluster.
    """
    vol = volume_name(spec.name)
    labels = {LABEL_CLUSTER: spec.cluster_uuid, LABEL_NODE: spec.name}
    if not spec.volume_gb:
        # Idempotent: Docker returns an existing volume of that name unchanged.
        provider.api.request("POST", "/volumes/create", body={"Name": vol, "Labels": labels})
        return vol
    existing = provider.api.inspect("volume", vol)
    if existing is not None and not owned_by(existing, spec.cluster_uuid):
        raise Conflict(f"node {spec.name}: volume {vol} exists and belongs to another cluster")
    path = loop_file(provider.data_dir, spec.cluster_uuid, spec.name)
    device = host.ensure_loop(path, spec.volume_gb)
    if existing is not None:
        if ((existing.get("Options") or {}).get("device")) == device:
            return vol
        log.info("node %s: volume %s points to a stale loop device; recreating it", spec.name, vol)
        provider.api.remove("volume", vol)
    body = {
        "Name": vol, "Driver": "local", "DriverOpts": {"type": "ext4", "device": device, "o": "discard"},
        "Labels": {**labels, LABEL_LOOP_FILE: str(path)},
    }  # fmt: skip
    provider.api.request("POST", "/volumes/create", body=body)
    return vol


def loop_stale(provider: LocalProvider, spec: NodeSpec) -> bool:
    """True when the node's sized volume points to a loop device that no longer backs its file."""
    if not spec.volume_gb:
        return False
    vol = provider.api.inspect("volume", volume_name(spec.name))
    if vol is None:
        return True
    device = (vol.get("Options") or {}).get("device")
    path = str(loop_file(provider.data_dir, spec.cluster_uuid, spec.name))
    return not any(dev == device and back == path for dev, back in host.list_loops())


def delete_loop(data_dir: Path, cluster_uuid: str, name: str) -> None:
    """Detach the node's loop device(s) and remove the backing file; missing ones are fine."""
    path = loop_file(data_dir, cluster_uuid, name)
    for dev, back in host.list_loops():
        if back == str(path):
            host.detach_loop(dev)
    path.unlink(missing_ok=True)
