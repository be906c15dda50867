"""A node cannot use the host's devices (issue 14, item 1), on the real engine.

A cluster user is root in a privileged node container. Before, the node saw every
host device and ``docker run --device /dev/vda ... mount /dev/vda /mnt`` inside it
mounted the host's root filesystem. Each attempt below is what such a user would try.
"""

from __future__ import annotations

import time

import pytest
from host_devices import host_disk

from flotilla.domain import ExecResult, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks
from flotilla.drivers.providers.local.devices import NODE_DEVICES, allowed
from flotilla.drivers.providers.local.images import busybox_tarball

pytestmark = pytest.mark.e2e

UNIX_DOCKERD = ["dockerd", "--host", "unix:///var/run/docker.sock"]


def _sh(provider: LocalProvider, node: NodeInfo, script: str, timeout: float = 60) -> ExecResult:
    return provider.exec(node, ["sh", "-c", script], timeout=timeout)


def _inner_docker(provider: LocalProvider, node: NodeInfo, *args: str) -> ExecResult:
    return provider.exec(node, ["docker", *args], timeout=120)


def _start_node(provider: LocalProvider, cluster_uuid: str, image: str) -> NodeInfo:
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    spec = NodeSpec(
        cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-m0", role="master", image_ref=image,
        network=net.name, command=UNIX_DOCKERD, cpus=1.0, memory_mb=768,
    )  # fmt: skip
    node = provider.ensure_node(spec)
    deadline = time.monotonic() + 60
    while not _inner_docker(provider, node, "version", "--format", "{{.Server.Version}}").ok:
        if time.monotonic() > deadline:
            pytest.fail("the node's dockerd did not answer within 60 s")
        time.sleep(0.2)
    loaded = provider.exec(
        node, ["docker", "import", "-", "busybox:local"], stdin=busybox_tarball(), timeout=120
    )
    assert loaded.ok, loaded.stderr
    return node


def test_node_cannot_use_host_devices(
    provider: LocalProvider, engine: Engine, hostroot_image: str, cluster_uuid: str
) -> None:
    disk, major, minor = host_disk()
    assert not allowed("b", major, minor)
    node = _start_node(provider, cluster_uuid, hostroot_image)
    refused = ("not permitted", "permission denied", "i/o error")

    def fails(res: ExecResult) -> bool:
        return res.returncode != 0 and any(word in res.stderr.lower() for word in refused)

    # Positive controls: what nodes need still works.
    ok = _sh(
        provider, node, "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && head -c 1 /dev/zero | wc -c"
    )
    assert ok.ok and ok.stdout.split() == ["4", "1"], ok
    inner = _inner_docker(provider, node, "run", "--rm", "busybox:local", "echo", "inner-ok")
    assert inner.ok and inner.stdout.strip() == "inner-ok", inner.stderr

    if engine.owned:  # the runtime wrapper of Flotilla's own engine filters /dev
        listed = _sh(provider, node, "find /dev -type b -o -type c | sort").stdout.split()
        assert disk not in listed
        assert not [p for p in listed if p.startswith("/dev/loop")], listed
        assert {d.path for d in NODE_DEVICES if "*" not in d.path} >= {"/dev/null", "/dev/kmsg"}

    # The escape, verbatim, through the node's own daemon.
    escape = _inner_docker(
        provider, node, "run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
        "--device", disk, "busybox:local", "mount", disk, "/mnt",
    )  # fmt: skip
    assert escape.returncode != 0, escape
    # A device cgroup rule asking for the disk, and a privileged inner container.
    rule = _inner_docker(
        provider, node, "run", "--rm", "--device-cgroup-rule", f"b {major}:{minor} rwm", "--cap-add", "MKNOD",
        "busybox:local", "sh", "-c", f"mknod /d b {major} {minor} && head -c 512 /d | wc -c",
    )  # fmt: skip
    assert rule.returncode != 0, rule
    priv = _inner_docker(
        provider, node, "run", "--rm", "--privileged", "busybox:local", "sh", "-c",
        f"mknod /d b {major} {minor} && head -c 512 /d | wc -c",
    )  # fmt: skip
    assert priv.returncode != 0, priv

    # mknod in the node itself: the node may exist, opening it is refused.
    assert fails(_sh(provider, node, f"mknod /tmp/disk b {major} {minor}; head -c 512 /tmp/disk"))
    mount = _sh(provider, node, "mkdir -p /tmp/m && mount -o ro /tmp/disk /tmp/m && ls /tmp/m")
    assert mount.returncode != 0 and not mount.stdout, mount
    # Memory and raw ports of the host are character devices: refused too.
    assert fails(_sh(provider, node, "mknod /tmp/mem c 1 1; head -c 1 /tmp/mem"))
    # The node cannot allow the disk to itself...
    assert fails(_sh(provider, node, f"echo 'b {major}:{minor} rwm' > /sys/fs/cgroup/devices/devices.allow"))
    # ...nor leave its cgroup: a fresh cgroup mount shows its own cgroup as the root.
    climb = _sh(
        provider, node,
        "mkdir -p /tmp/cg && mount -t cgroup -o devices cg /tmp/cg && ls /tmp/cg && "
        "echo $$ > /tmp/cg/cgroup.procs && head -c 512 /tmp/disk",
    )  # fmt: skip
    assert fails(climb), climb
    # (the host's root would list the nodes' parent "flotilla"; "docker" is the inner daemon's)
    assert "devices.allow" in climb.stdout and "flotilla" not in climb.stdout.split(), climb.stdout

    provider.sweep(cluster_uuid)
    assert leaks(engine, cluster_uuid) == []
