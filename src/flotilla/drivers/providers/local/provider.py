"""The local provider: cluster nodes are privileged containers on one Docker Engine.

Layout of one cluster (see the feasibility note for the measurements behind it); each
noun has its own module:

* network (``networks.py``): a ``--internal`` bridge with an explicit /24 from
  ``subnet_pool``. ``NetworkSpec.dns_nameserver`` is ignored (``nodefiles.resolv_conf``).
* node (here): ``docker run -d --privileged --tmpfs /run --tmpfs /tmp --restart
  unless-stopped`` (the body is built in ``containers.py``), data on a labelled volume
  (``volumes.py``; sized ones are loop-mounted ext4 files), ``spec.files`` bind-mounted
  read-only from the host (``nodefiles.py``).
* image kinds (label ``flotilla.node-image.kind``, see ``images.py``): ``hostroot``
  nodes get ``-v /usr:/usr:ro`` and run their command under ``/usr/bin/docker-init``;
  other images run under ``--init``.
* load balancers (``loadbalancer.py``): haproxy in a node of role ``lb``.
* SSH: ``spec.ssh_public_key`` is installed as ``/root/.ssh/authorized_keys`` (mode
  0600); ``login_user`` is not created (images have no such user). Nothing starts
  ``sshd``: the node's command is the COE daemon, the hostroot image only has sshd
  when the host has openssh-server installed, and the rootfs image has it but no host
  keys. Use :meth:`LocalProvider.exec` (``docker exec``) for shell access.

Every container, volume and network carries ``flotilla.cluster=<uuid>``;
:func:`sweep.leaks` lists whatever is left, :meth:`LocalProvider.sweep` removes it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from flotilla.errors import FlotillaError

from . import host, loadbalancer, networks, nodefiles, nodes, sweep, volumes
from .addresses import AddressBook
from .containers import (
    LABEL_NODE,
    check_name,
    label_filter,
    node_info,
)
from .engine import Engine
from .engine_api import EngineApi, quoted
from .guard import HostGuard

log = logging.getLogger(__name__)

#: Always: nodes are containers, an LB is just another node, ``docker exec`` works.
BASE_CAPABILITIES = frozenset({CAP_CONTAINERS_AS_NODES, CAP_LOAD_BALANCER, CAP_EXEC})
#: Only with an engine on this host: loop devices for sized volumes, node IPs routable here.
LOCAL_ENGINE_CAPABILITIES = frozenset({CAP_SIZED_VOLUMES, CAP_HOST_REACHABLE})

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
        self.net_lock = threading.Lock()
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

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``call(*args)`` on the provider's worker threads."""
        return self._pool.submit(call, *args)

    def parallel(self, *calls: Callable[[], T]) -> list[T]:
        """Run the calls on the provider's worker threads; their results in order."""
        futures = [self._pool.submit(c) for c in calls]
        return [f.result() for f in futures]

    def node_file(self, cluster_uuid: str, name: str, path: str) -> Path:
        """Where a file the node was created with lives on this host (it is bind-mounted)."""
        return nodefiles.node_file(self.data_dir, cluster_uuid, name, path)

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

    def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Create (or return) the cluster's ``--internal`` bridge network (``networks.py``).

        With ``spec.fixed_network`` that existing network is returned (``owned=False``);
        ``NotFound`` if it does not exist. ``Conflict`` if ``spec.name`` exists but
        belongs to another cluster; ``Unavailable``-like ``FlotillaError`` when the pool
        has no free /24.
        """
        return networks.ensure(self, spec)

    def delete_network(self, cluster_uuid: str, name: str) -> None:
        """Remove the cluster's network. Missing networks and networks not labelled with
        this cluster (e.g. a fixed network) are left alone and count as success."""
        networks.delete(self, cluster_uuid, name)

    # nodes -------------------------------------------------------------------

    def reserve_address(self, cluster_uuid: str, network: str, name: str, role: str) -> str:
        """The node's address on ``network``: its own, or the lowest free one promised to it
        (``providers.addressing``: lb ``.5``, registry ``.6``, others from ``.10``)."""
        check_name("cluster uuid", cluster_uuid)
        check_name("node name", name)
        return self.addresses.reserve(network, name, role)

    def ensure_node(self, spec: NodeSpec) -> NodeInfo:
        """Create (or return, or start) the node container; its command is running on return.

        Idempotent by ``spec.name``: a running node is returned as is (its spec is not
        compared), a stopped one is started. A stopped node whose loop device vanished
        (host reboot) is recreated on the same backing file, keeping its data.
        Raises ``NotFound`` for a missing image, ``Conflict`` when the name is taken by
        another cluster, ``Invalid`` for bad names/file paths, ``EngineError`` otherwise.
        """
        return nodes.ensure(self, spec)

    def delete_node(self, cluster_uuid: str, name: str) -> None:
        """Remove the node, its volume, loop device, backing file and files dir.

        Missing pieces are ignored. Objects with this name that carry another cluster's
        label are left alone (``Conflict``).
        """
        nodes.delete(self, cluster_uuid, name)

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
        nodefiles.put_files(self, node, files)

    def restart_node(self, node: NodeInfo) -> None:
        """``docker restart`` (SIGTERM, SIGKILL after 10 s); the command runs again on return."""
        self.api.request(
            "POST", f"/containers/{quoted(node.name)}/restart", params={"t": _RESTART_TIMEOUT},
            timeout=_RESTART_TIMEOUT + 60,
        )  # fmt: skip

    def image_exists(self, image_ref: str) -> bool:
        return self.api.inspect("image", image_ref) is not None

    @staticmethod
    def free_volume_gb(data_dir: Path) -> int:
        """Free GiB where sized node volumes live (``DATA_DIR/volumes``); needs no engine."""
        return volumes.free_gb(data_dir)

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
        return sweep.sweep(self, cluster_uuid)

    def close(self) -> None:
        """Release the provider's worker threads (the engine is left running)."""
        self._pool.shutdown(wait=False)
