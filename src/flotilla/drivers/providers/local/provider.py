"""The local provider: cluster nodes are privileged containers on one Docker Engine.

Layout of one cluster (see the feasibility note for the measurements behind it):

* network: a user-defined bridge created ``--internal`` with an explicit /24 from
  ``subnet_pool`` and an explicit bridge name (``flt<hash>``). The host reaches the
  nodes through the bridge gateway; nothing a node sends can leave the machine.
  ``NetworkSpec.dns_nameserver`` is ignored: every node gets a ``resolv.conf`` with
  ``nameserver 127.0.0.1``, so image pulls for unknown names fail at once instead of
  hanging on the internal network's DNS for 10-20 s.
* node: ``docker run -d --privileged --tmpfs /run --tmpfs /tmp --restart unless-stopped``,
  ``/var/lib/docker`` on a named volume (``<node>-docker``) that is created explicitly
  and labelled; with ``volume_gb`` the volume is a loop-mounted ext4 in a sparse file
  ``DATA_DIR/volumes/<cluster>/<node>.img``. ``spec.files`` are written to
  ``DATA_DIR/nodes/<cluster>/<node>/files/`` and bind-mounted read-only at their paths
  (paths under ``/usr``, ``/proc``, ``/sys``, ``/dev`` are refused).
* image kinds (label ``flotilla.node-image.kind``, see ``images.py``): ``hostroot``
  nodes get ``-v /usr:/usr:ro`` and run their command under ``/usr/bin/docker-init``;
  other images run under ``--init``.
* SSH: ``spec.ssh_public_key`` is installed as ``/root/.ssh/authorized_keys`` (mode
  0600); ``login_user`` is not created (images have no such user). Nothing starts
  ``sshd``: the node's command is the COE daemon, the hostroot image only has sshd
  when the host has openssh-server installed, and the rootfs image has it but no host
  keys. Use :meth:`LocalProvider.exec` (``docker exec``) for shell access.

Every container, volume and network carries ``flotilla.cluster=<uuid>``;
:func:`leaks` lists whatever is left, :meth:`LocalProvider.sweep` removes it.
Sized volumes use loop devices, so they need the engine to run on this host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import ipaddress
import json
import logging
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from flotilla.domain import (
    ExecResult,
    LoadBalancerInfo,
    LoadBalancerSpec,
    NetworkInfo,
    NetworkSpec,
    NodeInfo,
    NodeSpec,
    VolumeUsage,
)
from flotilla.drivers.base import (
    CAP_CONTAINERS_AS_NODES,
    CAP_EXEC,
    CAP_HOST_REACHABLE,
    CAP_IPVS,
    CAP_LOAD_BALANCER,
    CAP_SIZED_VOLUMES,
)
from flotilla.errors import Conflict, FlotillaError, NotFound

from . import firewall, host, loadbalancer
from .addresses import AddressBook
from .containers import (
    LABEL_CLUSTER,
    LABEL_LOOP_FILE,
    LABEL_NETWORK,
    LABEL_NODE,
    LABEL_ROUTED,
    check_name,
    create_body,
    file_mode,
    label_filter,
    node_info,
    owned_by,
    validate_file_path,
    volume_name,
)
from .engine import Engine
from .engine_api import ApiError, EngineApi, quoted
from .guard import HostGuard
from .images import KIND_HOSTROOT, KIND_LABEL

log = logging.getLogger(__name__)

#: Always: nodes are containers, an LB is just another node, ``docker exec`` works.
BASE_CAPABILITIES = frozenset({CAP_CONTAINERS_AS_NODES, CAP_LOAD_BALANCER, CAP_EXEC})
#: Only with an engine on this host: loop devices for sized volumes, node IPs routable here.
LOCAL_ENGINE_CAPABILITIES = frozenset({CAP_SIZED_VOLUMES, CAP_HOST_REACHABLE})

#: Subnets nodes use internally (inner docker0, docker_gwbridge, overlay pool).
_RESERVED_SUBNETS = tuple(
    ipaddress.IPv4Network(n) for n in ("172.17.0.0/16", "172.18.0.0/16", "10.0.0.0/8", "127.0.0.0/8")
)
_RESTART_TIMEOUT = 10

T = TypeVar("T")


class LocalProvider:
    """Nodes as privileged containers on a local Docker Engine (kind-style).

    Thread-safe: one instance may serve several conductor workers. Methods raise
    ``EngineError`` (a ``FlotillaError``) with Docker's message when a docker call
    fails, ``Invalid``/``NotFound``/``Conflict`` for bad specs, missing images and
    objects that belong to another cluster.
    """

    name = "local"

    def __init__(self, engine: Engine, subnet_pool: str = "172.29.0.0/16") -> None:
        self.engine = engine
        self.subnet_pool = ipaddress.IPv4Network(subnet_pool)
        self.data_dir = engine.data_dir
        self._net_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flotilla-local")
        self.guard = HostGuard(engine)
        self.guard.tighten_files(self.data_dir)
        try:
            self.guard.restore_networks()
        except FlotillaError as exc:
            log.warning("could not restore the iptables rules of cluster networks: %s", exc)
        self.addresses = AddressBook(lambda: self.api)

    @property
    def api(self) -> EngineApi:
        return self.engine.api

    @classmethod
    def connect(
        cls, docker_host: str | None, data_dir: Path, subnet_pool: str = "172.29.0.0/16"
    ) -> LocalProvider:
        """``Engine.connect(docker_host, data_dir)`` plus a provider on it."""
        return cls(Engine.connect(docker_host, data_dir), subnet_pool)

    # ----------------------------------------------------------------- helpers

    def _parallel(self, *calls: Callable[[], T]) -> list[T]:
        futures = [self._pool.submit(c) for c in calls]
        return [f.result() for f in futures]

    def _node_dir(self, cluster_uuid: str, name: str) -> Path:
        return self.data_dir / "nodes" / cluster_uuid / name

    def node_file(self, cluster_uuid: str, name: str, path: str) -> Path:
        """Where a file the node was created with lives on this host (it is bind-mounted)."""
        return self._node_dir(cluster_uuid, name) / "files" / path.lstrip("/")

    def _loop_file(self, cluster_uuid: str, name: str) -> Path:
        return self.data_dir / "volumes" / cluster_uuid / f"{name}.img"

    def _inspect_one(self, kind: str, name: str) -> dict[str, Any] | None:
        """``docker inspect`` of one container, network, volume or image; None when missing."""
        return self.api.inspect(kind, name)

    def _resolv_conf(self) -> Path:
        path = self.data_dir / "nodes" / "resolv.conf"
        content = "nameserver 127.0.0.1\n"
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".resolv.conf.{threading.get_ident()}")
            tmp.write_text(content)
            tmp.chmod(0o644)
            tmp.replace(path)
        return path

    # ----------------------------------------------------------------- Provider

    def capabilities(self) -> frozenset[str]:
        """``containers_as_nodes``, ``load_balancer``, ``exec``; plus ``sized_volumes`` and
        ``host_reachable`` when the engine runs on this host (owned, or a unix socket), and
        ``ipvs`` when this host's kernel (the nodes' kernel then) has IPVS."""
        if self.engine.owned or self.engine.host.startswith("unix://"):
            local = LOCAL_ENGINE_CAPABILITIES | ({CAP_IPVS} if host.kernel_has_ipvs() else set())
            return BASE_CAPABILITIES | local
        return BASE_CAPABILITIES

    def check(self) -> None:
        """Raise ``Unavailable`` unless the engine answers."""
        self.engine.ping()

    # networks ----------------------------------------------------------------

    @staticmethod
    def _network_info(net: Mapping[str, Any], owned: bool) -> NetworkInfo:
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

    def _used_subnets(self) -> list[ipaddress.IPv4Network]:
        def docker_nets() -> list[ipaddress.IPv4Network]:
            nets: list[ipaddress.IPv4Network] = []
            for net in self.api.get("/networks") or []:
                for cfg in (net.get("IPAM") or {}).get("Config") or []:
                    with contextlib.suppress(ValueError):
                        nets.append(ipaddress.IPv4Network(str(cfg.get("Subnet", "")), strict=False))
            return nets

        a, b = self._parallel(docker_nets, host.routes)
        return [*a, *b]

    def _candidate_subnets(self, used: Iterable[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        taken = [*used, *_RESERVED_SUBNETS]
        new_prefix = max(24, self.subnet_pool.prefixlen)
        return [
            cand
            for cand in self.subnet_pool.subnets(new_prefix=new_prefix)
            if not any(cand.overlaps(t) for t in taken)
        ]

    def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create (or return) the cluster's ``--internal`` bridge network.

        With ``spec.fixed_network`` that existing network is returned (``owned=False``);
        ``NotFound`` if it does not exist. ``Conflict`` if ``spec.name`` exists but
        belongs to another cluster; ``Unavailable``-like ``FlotillaError`` when the pool
        has no free /24.
        """
        check_name("cluster uuid", spec.cluster_uuid)
        if spec.fixed_network:
            net = self._inspect_one("network", spec.fixed_network)
            if net is None:
                raise NotFound(f"fixed network {spec.fixed_network!r} does not exist in the Docker Engine")
            return self._network_info(net, owned=False)
        check_name("network name", spec.name)
        with self._net_lock:
            net = self._inspect_one("network", spec.name)
            if net is not None:
                if not owned_by(net, spec.cluster_uuid):
                    raise Conflict(
                        f"network {spec.name!r} exists and does not belong to cluster {spec.cluster_uuid}"
                    )
                self.guard.guard_network(net)
                return self._network_info(net, owned=True)
            bridge = "flt" + hashlib.sha256(f"{spec.cluster_uuid}/{spec.name}".encode()).hexdigest()[:11]
            started = time.monotonic()
            for subnet in self._candidate_subnets(self._used_subnets()):
                gateway = str(next(subnet.hosts()))
                body = {
                    "Name": spec.name, "Driver": "bridge", "Internal": True, "CheckDuplicate": True,
                    "IPAM": {"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
                    "Options": {"com.docker.network.bridge.name": bridge},
                    "Labels": {LABEL_CLUSTER: spec.cluster_uuid, LABEL_NETWORK: spec.name,
                               **({LABEL_ROUTED: "true"} if spec.routed else {})},
                }  # fmt: skip
                try:
                    self.api.request("POST", "/networks/create", body=body)
                except ApiError as exc:
                    if "overlap" in exc.message.lower():
                        continue  # taken meanwhile (another process or engine)
                    if "already exists" in exc.message:
                        net = self._inspect_one("network", spec.name)
                        if net is not None and owned_by(net, spec.cluster_uuid):
                            self.guard.guard_network(net)
                            return self._network_info(net, owned=True)
                    raise
                self.guard.guard_network({**body, "Name": spec.name})
                log.info(
                    "cluster %s: network %s %s (bridge %s) created in %.2f s",
                    spec.cluster_uuid,
                    spec.name,
                    subnet,
                    bridge,
                    time.monotonic() - started,
                )
                return NetworkInfo(name=spec.name, subnet=str(subnet), gateway=gateway, owned=True)
        raise FlotillaError(f"no free /24 left in the subnet pool {self.subnet_pool} for network {spec.name}")

    def delete_network(self, cluster_uuid: str, name: str) -> None:
        """Remove the cluster's network. Missing networks and networks not labelled with
        this cluster (e.g. a fixed network) are left alone and count as success."""
        net = self._inspect_one("network", name)
        if net is not None and not owned_by(net, cluster_uuid):
            log.debug("cluster %s: network %s is not ours; keeping it", cluster_uuid, name)
            return
        if net is not None:
            self.api.remove("network", name)
        self.guard.forget_network(cluster_uuid, name)
        self.addresses.forget_network(name)
        if net is None:
            return
        log.info("cluster %s: network %s removed", cluster_uuid, name)
        self._remove_empty_cluster_dirs(cluster_uuid)

    # nodes -------------------------------------------------------------------

    def reserve_address(self, cluster_uuid: str, network: str, name: str, role: str) -> str:
        """The node's address on ``network``: its own, or the lowest free one promised to it
        (``providers.addressing``: lb ``.5``, registry ``.6``, others from ``.10``)."""
        check_name("cluster uuid", cluster_uuid)
        check_name("node name", name)
        return self.addresses.reserve(network, name, role)

    def _image_kind(self, node: str, image_ref: str) -> str | None:
        image = self._inspect_one("image", image_ref)
        if image is None:
            raise NotFound(
                f"node {node}: image {image_ref!r} does not exist in the Docker Engine at "
                f"{self.engine.host}; build it first (flotilla image-build)"
            )
        labels = (image.get("Config") or {}).get("Labels") or {}
        kind = labels.get(KIND_LABEL)
        return str(kind) if kind else None

    def _ensure_volume(self, spec: NodeSpec) -> str:
        """Create the node's labelled /var/lib/docker volume (sized when ``volume_gb``)."""
        vol = volume_name(spec.name)
        labels = {LABEL_CLUSTER: spec.cluster_uuid, LABEL_NODE: spec.name}
        if not spec.volume_gb:
            # Idempotent: Docker returns an existing volume of that name unchanged.
            self.api.request("POST", "/volumes/create", body={"Name": vol, "Labels": labels})
            return vol
        existing = self._inspect_one("volume", vol)
        if existing is not None and not owned_by(existing, spec.cluster_uuid):
            raise Conflict(f"node {spec.name}: volume {vol} exists and belongs to another cluster")
        path = self._loop_file(spec.cluster_uuid, spec.name)
        device = host.ensure_loop(path, spec.volume_gb)
        if existing is not None:
            if ((existing.get("Options") or {}).get("device")) == device:
                return vol
            log.info("node %s: volume %s points to a stale loop device; recreating it", spec.name, vol)
            self.api.remove("volume", vol)
        body = {
            "Name": vol, "Driver": "local", "DriverOpts": {"type": "ext4", "device": device, "o": "discard"},
            "Labels": {**labels, LABEL_LOOP_FILE: str(path)},
        }  # fmt: skip
        self.api.request("POST", "/volumes/create", body=body)
        return vol

    def _write_files(self, spec: NodeSpec, hostroot: bool) -> list[tuple[Path, str]]:
        """Write spec.files (and the SSH key) under the node dir; return (host path, node path)."""
        files: dict[str, bytes] = dict(spec.files)
        if spec.ssh_public_key:
            key = spec.ssh_public_key.strip().encode() + b"\n"
            files.setdefault("/root/.ssh/authorized_keys", key)
            if spec.login_user and spec.login_user != "root":
                files.setdefault(f"/home/{spec.login_user}/.ssh/authorized_keys", key)
        base = self._node_dir(spec.cluster_uuid, spec.name) / "files"
        host.private_dirs(base, levels=4)  # files, <node>, <cluster>, nodes
        mounts: list[tuple[Path, str]] = []
        for path, data in sorted(files.items()):
            rel = validate_file_path(spec.name, path, hostroot).relative_to("/")
            on_host = base / rel
            on_host.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Rewrite in place (same inode) so a running node's bind mount sees the new content.
            with on_host.open("wb") as f:
                f.write(data)
            on_host.chmod(file_mode(path))
            mounts.append((on_host, path))
        return mounts

    def _container_for(self, spec: NodeSpec) -> dict[str, Any] | None:
        c = self._inspect_one("container", spec.name)
        if c is not None and not owned_by(c, spec.cluster_uuid):
            raise Conflict(
                f"node {spec.name}: a container with that name exists and is not part of this cluster"
            )
        return c

    def _loop_volume_stale(self, spec: NodeSpec) -> bool:
        """True when the node's sized volume points to a loop device that no longer backs its file."""
        if not spec.volume_gb:
            return False
        vol = self._inspect_one("volume", volume_name(spec.name))
        if vol is None:
            return True
        device = (vol.get("Options") or {}).get("device")
        path = str(self._loop_file(spec.cluster_uuid, spec.name))
        return not any(dev == device and back == path for dev, back in host.list_loops())

    def ensure_node(self, spec: NodeSpec) -> NodeInfo:
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
        kind_f = self._pool.submit(self._image_kind, spec.name, spec.image_ref)
        existing = self._container_for(spec)
        if existing is not None:
            if (existing.get("State") or {}).get("Status") == "running":
                return node_info(existing)
            if self._loop_volume_stale(spec):
                self.api.remove("container", spec.name)
            else:
                if (existing.get("State") or {}).get("Status") == "restarting":
                    self._stop(spec.name)  # leave the crash loop first
                self.api.request("POST", f"/containers/{quoted(spec.name)}/start")
                node = self._inspect_one("container", spec.name)
                if node is None:
                    raise NotFound(f"node {spec.name}: container disappeared while starting")
                log.info(
                    "node %s: started existing container in %.2f s", spec.name, time.monotonic() - started
                )
                return self._checked_running(spec.name, node)

        kind = kind_f.result()
        if spec.ip is not None:  # the caller's choice: no automatic pick may take it meanwhile
            self.addresses.claim(spec.network, spec.name, spec.ip)
            try:
                return self._create_node(spec, kind, started)
            finally:
                self.addresses.release(spec.name)
        for attempt in range(1, 4):
            chosen = dataclasses.replace(spec, ip=self.addresses.reserve(spec.network, spec.name, spec.role))
            try:
                return self._create_node(chosen, kind, started)
            except FlotillaError as exc:
                # Another process (or a caller's explicit address) took it between our pick
                # and the start: pick again, the address is in use now.
                if "Address already in use" not in str(exc) or attempt == 3:
                    raise
                log.info("node %s: address %s was taken meanwhile; picking another", spec.name, chosen.ip)
                self.api.remove("container", spec.name)
            finally:
                self.addresses.release(spec.name)  # the container holds it now (or the next try picks again)
        raise AssertionError("unreachable")

    def _create_node(self, spec: NodeSpec, kind: str | None, started: float) -> NodeInfo:
        hostroot = kind == KIND_HOSTROOT
        volume_f = self._pool.submit(self._ensure_volume, spec)
        mounts_f = self._pool.submit(self._write_files, spec, hostroot)
        resolv = self._resolv_conf()
        mounts = mounts_f.result()
        volume = volume_f.result()
        body = create_body(spec, hostroot, volume, mounts, resolv, self.guard.device_cgroup())
        try:
            created = self.api.request("POST", "/containers/create", params={"name": spec.name}, body=body)
        except ApiError as exc:
            if "is already in use" in exc.message:  # created concurrently by another worker
                node = self._container_for(spec)
                if node is not None:
                    return node_info(node)
            raise FlotillaError(f"node {spec.name}: creating the container failed: {exc.message}") from exc
        try:
            self.api.request("POST", f"/containers/{created['Id']}/start", timeout=300)
        except ApiError as exc:
            raise FlotillaError(f"node {spec.name}: starting the container failed: {exc.message}") from exc
        node = self._inspect_one("container", spec.name)
        if node is None:
            raise NotFound(f"node {spec.name}: container disappeared right after docker run")
        info = self._checked_running(spec.name, node)
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

    def _checked_running(self, name: str, node: Mapping[str, Any]) -> NodeInfo:
        info = node_info(node)
        if info.state != "running":
            state = node.get("State") or {}
            logs = self.engine.run(["logs", "--tail", "20", name], check=False)
            # Stop the restart loop; ensure_node on the stopped node starts it again.
            with contextlib.suppress(FlotillaError):
                self._stop(name)
            raise FlotillaError(
                f"node {name}: command exited at once (status {state.get('Status')}, exit code "
                f"{state.get('ExitCode')}): {(logs.stdout + logs.stderr).strip()[-2000:]}"
            )
        return info

    def _stop(self, name: str, seconds: int = 1) -> None:
        self.api.request(
            "POST", f"/containers/{quoted(name)}/stop", params={"t": seconds}, timeout=seconds + 60
        )

    def delete_node(self, cluster_uuid: str, name: str) -> None:
        """Remove the node, its volume, loop device, backing file and files dir.

        Missing pieces are ignored. Objects with this name that carry another cluster's
        label are left alone (``Conflict``).
        """
        check_name("cluster uuid", cluster_uuid)
        check_name("node name", name)
        started = time.monotonic()
        vol = volume_name(name)
        container, volume = self._parallel(
            lambda: self._inspect_one("container", name),
            lambda: self._inspect_one("volume", vol),
        )
        if container is not None:
            if not owned_by(container, cluster_uuid):
                raise Conflict(f"node {name}: the container belongs to another cluster; not deleting it")
            self._rm_containers([name])
        if volume is not None and owned_by(volume, cluster_uuid):
            self._rm_volumes([vol])
        loop_file = self._loop_file(cluster_uuid, name)
        for dev, back in host.list_loops():
            if back == str(loop_file):
                host.detach_loop(dev)
        loop_file.unlink(missing_ok=True)
        shutil.rmtree(self._node_dir(cluster_uuid, name), ignore_errors=True)
        self._remove_empty_cluster_dirs(cluster_uuid)
        self.addresses.release(name)
        log.info("cluster %s: node %s deleted in %.2f s", cluster_uuid, name, time.monotonic() - started)

    def _rm(self, kind: str, names: Sequence[str]) -> None:
        """Remove objects of one kind; missing ones count as removed. Raises one
        ``FlotillaError`` naming every failure after trying them all."""
        errors: list[str] = []
        for name in names:
            try:
                self.api.remove(kind, name)
            except FlotillaError as exc:
                errors.append(str(exc))
        if errors:
            raise FlotillaError("; ".join(errors))

    def _rm_containers(self, names: Sequence[str]) -> None:
        self._rm("container", names)

    def _rm_volumes(self, names: Sequence[str]) -> None:
        self._rm("volume", names)

    def _rm_networks(self, names: Sequence[str]) -> None:
        self._rm("network", names)

    def _remove_empty_cluster_dirs(self, cluster_uuid: str) -> None:
        for d in (self.data_dir / "nodes" / cluster_uuid, self.data_dir / "volumes" / cluster_uuid):
            with contextlib.suppress(OSError):
                d.rmdir()

    def list_nodes(self, cluster_uuid: str | None = None) -> list[NodeInfo]:
        """Every node container of one cluster (or all), with state and address.

        One container-list request (it carries labels, state and addresses).
        """
        filters = json.dumps({"label": [label_filter(cluster_uuid), LABEL_NODE]})
        rows = self.api.get("/containers/json", all=1, filters=filters) or []
        nodes = [node_info(c) for c in rows]
        return sorted(nodes, key=lambda n: (n.cluster_uuid, n.name))

    # load balancers ----------------------------------------------------------

    def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancerInfo:
        """haproxy in a node container (``loadbalancer.py``); a changed spec rewrites its
        configuration and restarts it. ``Invalid`` without ``spec.image_ref``."""
        return loadbalancer.ensure(self, spec)

    def find_load_balancer(self, cluster_uuid: str, name: str) -> LoadBalancerInfo | None:
        return loadbalancer.find(self, cluster_uuid, name)

    def delete_load_balancer(self, cluster_uuid: str, name: str) -> None:
        self.delete_node(cluster_uuid, name)

    def list_load_balancers(self, cluster_uuid: str) -> list[LoadBalancerInfo]:
        return loadbalancer.list_all(self, cluster_uuid)

    def exec(
        self, node: NodeInfo, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0
    ) -> ExecResult:
        """``docker exec [-i] NODE ARGV``. On timeout the CLI is killed and the result has
        return code 124 and a note in stderr (the process inside may keep running)."""
        cmd = ["exec", *(["-i"] if stdin is not None else []), node.name, *argv]
        try:
            res = self.engine.run(cmd, input=stdin, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return ExecResult(124, out, err + f"\nflotilla: timed out after {timeout:g} s")
        return ExecResult(res.returncode, res.stdout, res.stderr)

    def put_files(self, node: NodeInfo, files: Mapping[str, bytes]) -> None:
        """Write files into a running node.

        Paths the node was created with (bind-mounted from its files dir) are rewritten in
        place on the host; others are unpacked inside the node with ``tar`` over
        ``docker exec`` (the image must have ``tar``; hostroot and rootfs images do).
        """
        if not files:
            return
        base = self._node_dir(node.cluster_uuid, node.name) / "files"
        rest: dict[str, bytes] = {}
        for path, data in files.items():
            rel = validate_file_path(node.name, path, hostroot=False).relative_to("/")
            on_host = base / rel
            if on_host.is_file():
                with on_host.open("wb") as f:
                    f.write(data)
            else:
                rest[path] = data
        if not rest:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, data in sorted(rest.items()):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(data)
                info.mode = file_mode(path)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        result = self.exec(node, ["tar", "-x", "-f", "-", "-C", "/", "--no-same-owner"], stdin=buf.getvalue())
        if not result.ok:
            raise FlotillaError(
                f"node {node.name}: writing {len(rest)} file(s) failed: {result.stderr.strip()}"
            )

    def restart_node(self, node: NodeInfo) -> None:
        """``docker restart`` (SIGTERM, SIGKILL after 10 s); the command runs again on return."""
        self.api.request(
            "POST", f"/containers/{quoted(node.name)}/restart", params={"t": _RESTART_TIMEOUT},
            timeout=_RESTART_TIMEOUT + 60,
        )  # fmt: skip

    def image_exists(self, image_ref: str) -> bool:
        return self._inspect_one("image", image_ref) is not None

    @staticmethod
    def free_volume_gb(data_dir: Path) -> int:
        """Free GiB where sized node volumes live (``DATA_DIR/volumes``); needs no engine."""
        return host.free_gib(Path(data_dir) / "volumes")

    def max_volume_gb(self) -> int | None:
        """The free space for volume images (they are sparse files: each may grow to its
        size); None when volumes cannot be sized (engine on another host)."""
        if CAP_SIZED_VOLUMES not in self.capabilities():
            return None
        return self.free_volume_gb(self.data_dir)

    def volume_usage(self, cluster_uuid: str | None = None) -> list[VolumeUsage]:
        """Fill level of the nodes' Docker volumes (see ``HostGuard.volume_usage``)."""
        return self.guard.volume_usage(cluster_uuid)

    def sweep(self, cluster_uuid: str) -> list[str]:
        """Remove every container, volume and network labelled with the cluster, the loop
        devices and backing files under ``DATA_DIR/volumes/<cluster>`` and the cluster's
        node dirs. Returns what was removed (``"container:NAME"``, ``"loop:/dev/loopN"``...).

        Best effort: everything removable is removed, then a ``FlotillaError`` lists what
        could not be.
        """
        check_name("cluster uuid", cluster_uuid)
        flt = label_filter(cluster_uuid)
        containers, volumes, networks = (
            self.api.names(kind, flt) for kind in ("container", "volume", "network")
        )
        removed: list[str] = []
        failed: list[str] = []

        def attempt(label: str, action: Callable[[], object]) -> None:
            try:
                action()
            except (FlotillaError, OSError, subprocess.SubprocessError) as exc:
                failed.append(f"{label}: {exc}")
            else:
                removed.append(label)

        def batch(kind: str, names: Sequence[str], rm: Callable[[Sequence[str]], None]) -> None:
            if not names:
                return
            try:
                rm(names)  # one call for all; per item only to pinpoint a failure
            except FlotillaError:
                for name in names:
                    attempt(f"{kind}:{name}", functools.partial(rm, [name]))
            else:
                removed.extend(f"{kind}:{name}" for name in names)

        batch("container", containers, self._rm_containers)
        self._parallel(
            functools.partial(batch, "volume", volumes, self._rm_volumes),
            functools.partial(batch, "network", networks, self._rm_networks),
        )
        if self.guard.firewall:
            rules = firewall.rules(cluster_uuid=cluster_uuid)
            if rules:
                attempt(f"iptables:{len(rules)} rule(s)", lambda: firewall.remove(cluster_uuid=cluster_uuid))
        vol_dir = self.data_dir / "volumes" / cluster_uuid
        for dev, back in host.loops_under(vol_dir):
            attempt(f"loop:{dev} ({back})", functools.partial(host.detach_loop, dev))
        for d in (vol_dir, self.data_dir / "nodes" / cluster_uuid):
            if d.exists():
                attempt(f"dir:{d}", functools.partial(shutil.rmtree, d))
        if removed:
            log.info("cluster %s: swept %d object(s): %s", cluster_uuid, len(removed), ", ".join(removed))
        if failed:
            raise FlotillaError(f"cluster {cluster_uuid}: sweep could not remove: " + "; ".join(failed))
        return removed

    def close(self) -> None:
        """Release the provider's worker threads (the engine is left running)."""
        self._pool.shutdown(wait=False)


def leaks(engine: Engine, cluster_uuid: str | None = None) -> list[str]:
    """Everything Flotilla left behind for one cluster (or all clusters).

    Containers, networks and volumes labelled ``flotilla.cluster[=uuid]``, loop devices
    whose backing file lives under ``DATA_DIR/volumes[/uuid]``, and non-empty per-cluster
    dirs under ``DATA_DIR/nodes`` and ``DATA_DIR/volumes``. Entries look like
    ``"container:c1-master-0"``; an empty list means clean.
    """
    flt = label_filter(cluster_uuid)
    found = [
        f"{kind}:{name}"
        for kind in ("container", "network", "volume")
        for name in engine.api.names(kind, flt)
    ]
    found += [
        f"iptables:{rule}"
        for rule in firewall.rules(
            engine_id=None if cluster_uuid else engine.engine_id, cluster_uuid=cluster_uuid
        )
    ]
    vol_root = engine.data_dir / "volumes"
    found += [
        f"loop:{dev} ({back})"
        for dev, back in host.loops_under(vol_root / cluster_uuid if cluster_uuid else vol_root)
    ]
    for sub in ("nodes", "volumes"):
        root = engine.data_dir / sub
        dirs = (
            [root / cluster_uuid]
            if cluster_uuid
            else (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
        )
        for d in dirs:
            if d.is_dir() and any(d.iterdir()):
                found.append(f"dir:{d}")
    return found
