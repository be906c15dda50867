"""The local provider's load balancer takes a new member list without cutting the
connections it carries: haproxy reloads (master-worker mode, SIGUSR2) instead of the
container restarting, so a client connected through it keeps talking to its member.

Run under the engine lock:
``flock /tmp/flotilla-engine.lock .venv/bin/python -m pytest tests/e2e/test_local_lb_reload.py``.
"""

from __future__ import annotations

import socket
import time

import pytest

from flotilla.domain import Listener, LoadBalancerSpec, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

pytestmark = pytest.mark.e2e

PORT = 7000
#: Says which member answered, then echoes every line.
ECHO = ["socat", f"TCP-LISTEN:{PORT},fork,reuseaddr", "SYSTEM:hostname; exec cat"]


def _member(provider: LocalProvider, cluster: str, net: str, image: str, name: str) -> NodeInfo:
    return provider.ensure_node(
        NodeSpec(
            cluster_uuid=cluster, name=f"{cluster}-{name}", role="master", image_ref=image, network=net,
            cpus=0.5, memory_mb=128, command=ECHO,
        )
    )  # fmt: skip


def _connect(address: str) -> tuple[socket.socket, str]:
    """A connection through the balancer and the name of the member that took it."""
    sock = socket.create_connection((address, PORT), timeout=5)
    return sock, sock.makefile("r").readline().strip()


def _echo(sock: socket.socket, text: str) -> str:
    sock.sendall(text.encode() + b"\n")
    return sock.makefile("r").readline().strip()


def test_new_members_reach_a_running_balancer_without_dropping_its_connections(
    provider: LocalProvider, engine: Engine, hostroot_image: str, cluster_uuid: str
) -> None:
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net")).name
    a = _member(provider, cluster_uuid, net, hostroot_image, "a")
    b = _member(provider, cluster_uuid, net, hostroot_image, "b")
    assert a.address and b.address
    name = f"{cluster_uuid}-lb-0"

    def spec(*members: str) -> LoadBalancerSpec:
        return LoadBalancerSpec(cluster_uuid, name, net, (Listener(PORT, members),), image_ref=hostroot_image)

    lb = provider.ensure_load_balancer(spec(a.address))
    assert lb.address
    deadline = time.monotonic() + 30
    while True:  # haproxy starting, its first health check passing
        try:
            held, who = _connect(lb.address)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert who == a.name and _echo(held, "one") == "one"
    started = (engine.api.inspect("container", name) or {})["State"]["StartedAt"]

    assert provider.ensure_load_balancer(spec(a.address, b.address)).address == lb.address
    # The connection made before the change still works: the old worker keeps it.
    assert _echo(held, "two") == "two"
    # New connections reach the new member (once its first health check passes).
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while b.name not in seen and time.monotonic() < deadline:
        sock, who = _connect(lb.address)
        seen.add(who)
        sock.close()
        time.sleep(0.1)
    assert seen == {a.name, b.name}
    assert _echo(held, "three") == "three"
    held.close()
    # Reloaded, not restarted.
    assert (engine.api.inspect("container", name) or {})["State"]["StartedAt"] == started

    provider.delete_load_balancer(cluster_uuid, name)
    for node in (a, b):
        provider.delete_node(cluster_uuid, node.name)
    provider.delete_network(cluster_uuid, net)
    assert leaks(engine, cluster_uuid) == []
