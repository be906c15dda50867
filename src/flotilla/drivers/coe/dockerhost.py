"""Shared pieces for COEs whose nodes run a Docker daemon (docker, swarm-mode).

Node addresses are the provider's: ``Provider.reserve_address`` before a node exists
(its certificate names the address), ``NodeInfo.address`` after. Nothing here derives an
address from a node's name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from flotilla.domain import NetworkInfo, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.base import CAP_HOST_REACHABLE, ClusterSpec, NodeGroupSpec, StepContext
from flotilla.drivers.coe import dockerapi

TLS_DIR = "/etc/docker/tls"
TLS_PORT = 2376
PLAIN_PORT = 2375
LOGIN_USER = "fedora"
#: Requested docker_storage_driver -> what the node's dockerd runs (Docker's data sits on
#: the node's dedicated sized volume; devicemapper's thin pools need the host's
#: device-mapper, so the guide's default is served as overlay2 on that volume).
STORAGE_DRIVERS = {
    "overlay2": "overlay2",
    "overlay": "overlay2",
    "devicemapper": "overlay2",
    None: "overlay2",
}


def storage_summary(docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
    """Docker hosts keep images and containers in Docker's storage driver on the node volume."""
    if not docker_storage_driver:
        return None
    size = f" on a {volume_gb} GB volume per node" if volume_gb else ""
    return f"Docker storage: {docker_storage_driver}{size}"


def network_name(spec: ClusterSpec) -> str:
    return f"flotilla-{spec.uuid[:12]}"


def ensure_network(ctx: StepContext) -> NetworkInfo:
    spec = ctx.spec
    return ctx.provider.ensure_network(
        NetworkSpec(
            cluster_uuid=spec.uuid, name=network_name(spec), fixed_network=spec.fixed_network,
            dns_nameserver=spec.dns_nameserver,
        )
    )  # fmt: skip


def node_ip(ctx: StepContext, net: NetworkInfo, role: str, name: str) -> str:
    """The address the provider gives (or gave) node ``name``: idempotent by name."""
    return ctx.provider.reserve_address(ctx.spec.uuid, net.name, name, role)


def addresses(ctx: StepContext) -> dict[str, str]:
    """``{node name: address}`` of the cluster's nodes as the provider reports them (one call)."""
    return {n.name: n.address for n in ctx.provider.list_nodes(ctx.spec.uuid) if n.address}


def cluster_prefix(spec: ClusterSpec) -> str:
    """The node-name prefix of the cluster (``<name>-<uuid8>``), from its first master."""
    return spec.master.names[0].rsplit("-master-", 1)[0]


def registry_name(spec: ClusterSpec) -> str:
    return cluster_prefix(spec) + "-registry-0"


def port(spec: ClusterSpec) -> int:
    return PLAIN_PORT if spec.tls_disabled else TLS_PORT


def api_address(spec: ClusterSpec, ip: str) -> str:
    return f"tcp://{ip}:{port(spec)}"


#: Starts sshd (when the image has it) in the background for the guide's login, and
#: execs the daemon at once: host keys are generated (``ssh-keygen -A``, seconds for RSA
#: on a small machine when the image has none) while dockerd comes up, not before.
NODE_INIT = (
    "if [ -x /usr/sbin/sshd ]; then (mkdir -p /etc/ssh /run/sshd && ssh-keygen -A >/dev/null 2>&1 && "
    "exec /usr/sbin/sshd -f /dev/null -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password) "
    "</dev/null >/dev/null 2>&1 & fi; "
    'exec "$@"'
)


def dockerd_command(spec: ClusterSpec) -> list[str]:
    """The node's main process: sshd in the background, then dockerd."""
    return ["sh", "-c", NODE_INIT, "node-init", *_dockerd(spec)]


def _dockerd(spec: ClusterSpec) -> list[str]:
    storage = STORAGE_DRIVERS.get(spec.docker_storage_driver, "overlay2")
    cmd = ["dockerd", "--host", "unix:///var/run/docker.sock", f"--storage-driver={storage}"]
    if spec.tls_disabled:
        # Explicit --tls=false: without it dockerd 20.10 sleeps 15 s warning about plain TCP.
        return [*cmd, "--host", f"tcp://0.0.0.0:{PLAIN_PORT}", "--tls=false"]
    return [
        *cmd, "--host", f"tcp://0.0.0.0:{TLS_PORT}", "--tlsverify",
        f"--tlscacert={TLS_DIR}/ca.pem", f"--tlscert={TLS_DIR}/server-cert.pem", f"--tlskey={TLS_DIR}/server-key.pem",
    ]  # fmt: skip


def proxy_env(spec: ClusterSpec) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in (
        ("HTTP_PROXY", spec.http_proxy),
        ("HTTPS_PROXY", spec.https_proxy),
        ("NO_PROXY", spec.no_proxy),
    ):
        if value:
            env[key] = value
            env[key.lower()] = value
    return env


REGISTRY_PORT = 5000


def registry_address(ctx: StepContext, net: NetworkInfo) -> str:
    """``IP:5000`` of the cluster's registry (``registry_enabled``); the local provider
    gives registries the subnet's ``.6`` while it is free."""
    return f"{node_ip(ctx, net, 'registry', registry_name(ctx.spec))}:{REGISTRY_PORT}"


def tls_files(
    ctx: StepContext, name: str, ips: list[str], net: NetworkInfo | None = None
) -> dict[str, bytes]:
    """The daemon's server certificate, and the cluster CA as the registry's trust root."""
    if ctx.spec.tls_disabled and not ctx.spec.registry_enabled:
        return {}
    tls = ctx.server_tls(name, [name, "localhost"], ips)
    files: dict[str, bytes] = {}
    if ctx.spec.registry_enabled and net is not None:
        files[f"/etc/docker/certs.d/{registry_address(ctx, net)}/ca.crt"] = tls.ca_pem.encode()
    if ctx.spec.tls_disabled:
        return files
    return {
        **files,
        f"{TLS_DIR}/ca.pem": tls.ca_pem.encode(),
        f"{TLS_DIR}/server-cert.pem": tls.cert_pem.encode(),
        f"{TLS_DIR}/server-key.pem": tls.key_pem.encode(),
    }


def node_spec(
    ctx: StepContext,
    net: NetworkInfo,
    group: NodeGroupSpec,
    name: str,
    *,
    extra_ips: list[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> NodeSpec:
    spec = ctx.spec
    ip = node_ip(ctx, net, group.role, name)
    return NodeSpec(
        cluster_uuid=spec.uuid, name=name, role=group.role, image_ref=group.image_ref, network=net.name,
        cpus=group.flavor.vcpus, memory_mb=group.flavor.ram_mb, command=dockerd_command(spec),
        volume_gb=spec.docker_volume_size, ip=ip, env=proxy_env(spec),
        files=tls_files(ctx, name, [ip, *(extra_ips or [])], net), ssh_public_key=spec.ssh_public_key,
        login_user=LOGIN_USER, labels=dict(labels or {}), flavor=group.flavor.name,
    )  # fmt: skip


def start_node(ctx: StepContext, net: NetworkInfo, group: NodeGroupSpec, name: str, **kw: object) -> NodeInfo:
    return ctx.provider.ensure_node(node_spec(ctx, net, group, name, **kw))  # type: ignore[arg-type]


def delete_everything(ctx: StepContext) -> None:
    """Remove every node, then the network, then sweep anything still labelled."""
    spec = ctx.spec
    nodes = ctx.provider.list_nodes(spec.uuid)
    for i, node in enumerate(nodes, 1):
        ctx.progress(f"{i} of {len(nodes)}: {node.name}")
        ctx.provider.delete_node(spec.uuid, node.name)
    ctx.provider.delete_network(spec.uuid, network_name(spec))
    ctx.provider.sweep(spec.uuid)


def find_node(ctx: StepContext, name: str) -> NodeInfo:
    for node in ctx.provider.list_nodes(ctx.spec.uuid):
        if node.name == name:
            return node
    raise RuntimeError(f"node {name} is missing")


def wait_daemon(ctx: StepContext, name: str, ip: str, *, timeout: float = 90.0) -> str:
    """Wait until the node's Docker daemon answers; return its version.

    Over the cluster's TLS endpoint from this host when the provider's nodes are
    reachable from here (the path users take); else through the provider's exec.
    """
    spec = ctx.spec
    if CAP_HOST_REACHABLE in ctx.provider.capabilities():
        tls = None if spec.tls_disabled else ctx.client_tls()
        info = dockerapi.wait_ready(
            api_address(spec, ip),
            tls,
            timeout=timeout,
            what=f"Docker daemon on {name}",
            tick=lambda elapsed: ctx.progress(f"Docker daemon on {name} starting, {elapsed}"),
        )
        return str(info.get("Version", ""))
    node = find_node(ctx, name)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        r = ctx.provider.exec(node, ["docker", "version", "--format", "{{.Server.Version}}"], timeout=10)
        if r.ok:
            return r.stdout.strip()
        last = (r.stderr or r.stdout).strip()[-200:]
        if time.monotonic() > deadline:
            raise TimeoutError(f"Docker daemon on {name} did not answer within {timeout:.0f} s ({last})")
        ctx.progress(f"waiting for {name}")
        time.sleep(0.1)
