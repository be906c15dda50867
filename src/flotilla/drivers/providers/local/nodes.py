"""Nodes of the local provider: one privileged container per node (``containers.py``
builds the ``docker run`` body), its data volume (``volumes.py``) and its files
(``nodefiles.py``). ``LocalProvider.ensure_node`` / ``delete_node`` call these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flotilla.domain import NodeInfo, NodeSpec
from flotilla.errors import Conflict, FlotillaError, NotFound

from . import nodefiles, volumes
from .containers import check_name, create_body, node_info, owned_by, volume_name
from .engine_api import ApiError, quoted
from .images import KIND_HOSTROOT, KIND_LABEL

if TYPE_CHECKING:
    from .provider import LocalProvider

log = logging.getLogger(__name__)


def _image_kind(provider: LocalProvider, node: str, image_ref: str) -> str | None:
    image = provider.api.inspect("image", image_ref)
    if image is None:
        raise NotFound(
            f"node {node}: image {image_ref!r} does not exist in the Docker Engine at "
            f"{provider.engine.host}; build it first (flotilla image-build)"
        )
    labels = (image.get("Config") or {}).get("Labels") or {}
    kind = labels.get(KIND_LABEL)
    return str(kind) if kind else None


def _container_for(provider: LocalProvider, spec: NodeSpec) -> dict[str, Any] | None:
    c = provider.api.inspect("container", spec.name)
    if c is not None and not owned_by(c, spec.cluster_uuid):
        raise Conflict(f"node {spec.name}: a container with that name exists and is not part of this cluster")
    return c


def ensure(provider: LocalProvider, spec: NodeSpec) -> NodeInfo:
    """Create (or return, or start) the node container; its command is running on return.

    Idempotent by ``spec.name``: a running node is returned as is (its spec is not
    compared), a stopped one is started. A stopped node whose loop device vanished
    (host reboot) is recreated on the same backing file, keeping its data.
    Raises ``NotFound`` for a missing image, ``Conflict`` when the name is taken by
    another cluster, ``Invalid`` for bad names/file paths, ``EngineError`` otherwise.
    """
    check_name("cluster uuid", spec.cluster_uuid)
    check_name("node name", spec.name)
    started = time.monotonic()
    # The image lookup is wasted when the node exists, but costs less than a round trip.
    kind_f = provider.submit(_image_kind, provider, spec.name, spec.image_ref)
    existing = _container_for(provider, spec)
    if existing is not None:
        if (existing.get("State") or {}).get("Status") == "running":
            return node_info(existing)
        if volumes.loop_stale(provider, spec):
            provider.api.remove("container", spec.name)
        else:
            if (existing.get("State") or {}).get("Status") == "restarting":
                _stop(provider, spec.name)  # leave the crash loop first
            provider.api.request("POST", f"/containers/{quoted(spec.name)}/start")
            node = provider.api.inspect("container", spec.name)
            if node is None:
                raise NotFound(f"node {spec.name}: container disappeared while starting")
            log.info("node %s: started existing container in %.2f s", spec.name, time.monotonic() - started)
            return _checked_running(provider, spec.name, node)

    kind = kind_f.result()
    if spec.ip is not None:  # the caller's choice: no automatic pick may take it meanwhile
        provider.addresses.claim(spec.network, spec.name, spec.ip)
        try:
            return _create(provider, spec, kind, started)
        finally:
            provider.addresses.release(spec.name)
    for attempt in range(1, 4):
        chosen = dataclasses.replace(spec, ip=provider.addresses.reserve(spec.network, spec.name, spec.role))
        try:
            return _create(provider, chosen, kind, started)
        except FlotillaError as exc:
            # Another process (or a caller's explicit address) took it between our pick
            # and the start: pick again, the address is in use now.
            if "Address already in use" not in str(exc) or attempt == 3:
                raise
            log.info("node %s: address %s was taken meanwhile; picking another", spec.name, chosen.ip)
            provider.api.remove("container", spec.name)
        finally:
            provider.addresses.release(spec.name)  # the container holds it now (or the next try picks again)
    raise AssertionError("unreachable")


def _create(provider: LocalProvider, spec: NodeSpec, kind: str | None, started: float) -> NodeInfo:
    hostroot = kind == KIND_HOSTROOT
    volume_f = provider.submit(volumes.ensure, provider, spec)
    mounts_f = provider.submit(nodefiles.write_files, provider.data_dir, spec, hostroot)
    resolv = nodefiles.resolv_conf(provider.data_dir)
    mounts = mounts_f.result()
    volume = volume_f.result()
    body = create_body(spec, hostroot, volume, mounts, resolv, provider.guard.device_cgroup())
    try:
        created = provider.api.request("POST", "/containers/create", params={"name": spec.name}, body=body)
    except ApiError as exc:
        if "is already in use" in exc.message:  # created concurrently by another worker
            node = _container_for(provider, spec)
            if node is not None:
                return node_info(node)
        raise FlotillaError(f"node {spec.name}: creating the container failed: {exc.message}") from exc
    try:
        provider.api.request("POST", f"/containers/{created['Id']}/start", timeout=300)
    except ApiError as exc:
        raise FlotillaError(f"node {spec.name}: starting the container failed: {exc.message}") from exc
    node = provider.api.inspect("container", spec.name)
    if node is None:
        raise NotFound(f"node {spec.name}: container disappeared right after docker run")
    info = _checked_running(provider, spec.name, node)
    log.info(
        "cluster %s: node %s (%s, %s) up at %s in %.2f s",
        spec.cluster_uuid,
        spec.name,
        spec.role,
        kind or "rootfs",
        info.address,
        time.monotonic() - started,
    )
    return info


def _checked_running(provider: LocalProvider, name: str, node: Mapping[str, Any]) -> NodeInfo:
    info = node_info(node)
    if info.state != "running":
        state = node.get("State") or {}
        logs = provider.engine.run(["logs", "--tail", "20", name], check=False)
        # Stop the restart loop; ensure_node on the stopped node starts it again.
        with contextlib.suppress(FlotillaError):
            _stop(provider, name)
        raise FlotillaError(
            f"node {name}: command exited at once (status {state.get('Status')}, exit code "
            f"{state.get('ExitCode')}): {(logs.stdout + logs.stderr).strip()[-2000:]}"
        )
    return info


def _stop(provider: LocalProvider, name: str, seconds: int = 1) -> None:
    provider.api.request(
        "POST", f"/containers/{quoted(name)}/stop", params={"t": seconds}, timeout=seconds + 60
    )


def delete(provider: LocalProvider, cluster_uuid: str, name: str) -> None:
    """Remove the node, its volume, loop device, backing file and files dir.

    Missing pieces are ignored. Objects with this name that carry another cluster's
    label are left alone (``Conflict``).
    """
    check_name("cluster uuid", cluster_uuid)
    check_name("node name", name)
    started = time.monotonic()
    vol = volume_name(name)
    container, volume = provider.parallel(
        lambda: provider.api.inspect("container", name),
        lambda: provider.api.inspect("volume", vol),
    )
    if container is not None:
        if not owned_by(container, cluster_uuid):
            raise Conflict(f"node {name}: the container belongs to another cluster; not deleting it")
        provider.api.remove("container", name)
    if volume is not None and owned_by(volume, cluster_uuid):
        provider.api.remove("volume", vol)
    volumes.delete_loop(provider.data_dir, cluster_uuid, name)
    shutil.rmtree(nodefiles.node_dir(provider.data_dir, cluster_uuid, name), ignore_errors=True)
    nodefiles.remove_empty_cluster_dirs(provider.data_dir, cluster_uuid)
    provider.addresses.release(name)
    log.info("cluster %s: node %s deleted in %.2f s", cluster_uuid, name, time.monotonic() - started)
