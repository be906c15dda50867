"""How the swarm-mode driver talks to the Docker daemons of a cluster's nodes.

Two ways, one protocol:

* :class:`ApiChannel`: the Docker Engine API over the node's own endpoint (TLS 2376
  with the conductor's client certificate, or plain 2375), from this host. Used when
  the provider's nodes are reachable from here: it is the path users take, and a
  request costs a few milliseconds where a ``docker exec`` costs 100-200.
* :class:`ExecChannel`: the ``docker`` CLI inside the node through the provider's
  exec, for providers whose nodes this host cannot reach (and the fake provider).

Nodes are addressed by ``(name, ip)``; each channel uses whichever it needs.
Errors raise ``RuntimeError`` naming the node and what failed.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from flotilla.domain import NodeInfo, TlsMaterial
from flotilla.drivers.base import CAP_HOST_REACHABLE, StepContext
from flotilla.drivers.coe import dockerapi, dockerhost

SWARM_PORT = 2377
ALREADY_IN_SWARM = "already part of a swarm"
#: Task states in which a task's container may still run on its node.
LIVE_TASK_STATES = frozenset({"assigned", "accepted", "preparing", "ready", "starting", "running"})


class SwarmChannel(Protocol):
    def swarm_state(self, name: str, ip: str) -> str:
        """The node's ``LocalNodeState``: ``inactive``, ``pending``, ``active``, ``error``, ``locked``."""
        ...

    def init(self, name: str, ip: str) -> None:
        """``docker swarm init`` advertising ``ip``; a node already in a swarm counts as done."""
        ...

    def join_token(self, name: str, ip: str, role: str) -> str:
        """The ``worker`` or ``manager`` join token, asked of the manager at ``ip``."""
        ...

    def join(self, name: str, ip: str, token: str, leader_ip: str) -> None:
        """Join the node to the swarm at ``leader_ip``; a node already in a swarm counts as done."""
        ...

    def remove_ingress(self, name: str, ip: str) -> None:
        """Remove the swarm's ``ingress`` network (the routing mesh); gone already counts as done."""
        ...

    def node_states(self, name: str, ip: str) -> dict[str, str]:
        """``{hostname: Ready|Down|Unknown|Disconnected}`` as the manager sees it; ``{}`` if it
        cannot answer. A hostname listed twice (a replaced node) keeps its Ready entry."""
        ...

    def version(self, name: str, ip: str) -> str: ...

    def drain(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        """Set the nodes' availability to drain (best effort: missing nodes are skipped)."""
        ...

    def live_tasks(self, name: str, ip: str, nodes: Sequence[str]) -> int:
        """How many tasks still run (or start) on ``nodes``: after a drain, until their
        containers have actually stopped. -1 when the manager cannot tell."""
        ...

    def remove_nodes(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        """``docker node rm --force`` (best effort)."""
        ...


def for_context(ctx: StepContext) -> SwarmChannel:
    """The API channel when nodes are reachable from here, else the exec channel."""
    if CAP_HOST_REACHABLE in ctx.provider.capabilities():
        return ApiChannel(ctx)
    return ExecChannel(ctx)


def _merge_state(states: dict[str, str], host: str, status: str) -> None:
    if host and (host not in states or status == "Ready"):
        states[host] = status


class ApiChannel:
    """The Engine API over each node's endpoint (``tcp://IP:2376`` with TLS, or 2375)."""

    def __init__(self, ctx: StepContext) -> None:
        self._spec = ctx.spec
        self._tls: TlsMaterial | None = None if ctx.spec.tls_disabled else ctx.client_tls()
        self._ssl: ssl.SSLContext | None = None

    def _client(self, ip: str, timeout: float) -> httpx.Client:
        address = dockerhost.api_address(self._spec, ip)
        if self._tls is None:
            return dockerapi.client(address, None, timeout)
        if self._ssl is None:
            self._ssl = dockerapi.ssl_context(self._tls)
        return httpx.Client(
            base_url=f"https://{address.removeprefix('tcp://')}", verify=self._ssl, timeout=timeout
        )

    def _call(
        self,
        name: str,
        ip: str,
        method: str,
        path: str,
        *,
        body: object | None = None,
        params: dict[str, str] | None = None,
        timeout: float = 15.0,
        ok_if: str | None = None,
    ) -> Any:
        try:
            with self._client(ip, timeout) as c:
                r = c.request(method, path, json=body, params=params)
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            raise RuntimeError(
                f"{method} {path} on {name} ({ip}) failed: {exc or type(exc).__name__}"
            ) from exc
        if r.status_code >= 400:
            message = _message(r)
            if ok_if is not None and ok_if in message:
                return None
            raise RuntimeError(
                f"{method} {path} on {name} ({ip}) failed: HTTP {r.status_code}: {message[-300:]}"
            )
        return (
            r.json()
            if r.content and r.headers.get("content-type", "").startswith("application/json")
            else None
        )

    def swarm_state(self, name: str, ip: str) -> str:
        info = self._call(name, ip, "GET", "/info")
        return str(((info or {}).get("Swarm") or {}).get("LocalNodeState", ""))

    def init(self, name: str, ip: str) -> None:
        body = {"ListenAddr": f"{ip}:{SWARM_PORT}", "AdvertiseAddr": ip}
        self._call(name, ip, "POST", "/swarm/init", body=body, timeout=60, ok_if=ALREADY_IN_SWARM)

    def join_token(self, name: str, ip: str, role: str) -> str:
        swarm = self._call(name, ip, "GET", "/swarm") or {}
        token = (swarm.get("JoinTokens") or {}).get(role.capitalize())
        if not token:
            raise RuntimeError(f"{name} ({ip}) gave no {role} join token")
        return str(token)

    def join(self, name: str, ip: str, token: str, leader_ip: str) -> None:
        body = {
            "ListenAddr": f"0.0.0.0:{SWARM_PORT}",
            "AdvertiseAddr": ip,
            "RemoteAddrs": [f"{leader_ip}:{SWARM_PORT}"],
            "JoinToken": token,
        }
        self._call(name, ip, "POST", "/swarm/join", body=body, timeout=60, ok_if=ALREADY_IN_SWARM)

    def remove_ingress(self, name: str, ip: str) -> None:
        try:
            self._call(name, ip, "DELETE", "/networks/ingress", timeout=60)
        except RuntimeError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def node_states(self, name: str, ip: str) -> dict[str, str]:
        try:
            nodes = self._call(name, ip, "GET", "/nodes") or []
        except RuntimeError:
            return {}
        states: dict[str, str] = {}
        for node in nodes:
            host = str((node.get("Description") or {}).get("Hostname", ""))
            _merge_state(states, host, str((node.get("Status") or {}).get("State", "")).capitalize())
        return states

    def version(self, name: str, ip: str) -> str:
        return str((self._call(name, ip, "GET", "/version") or {}).get("Version", ""))

    def drain(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        for node in nodes:
            try:
                current = self._call(name, ip, "GET", f"/nodes/{node}")
                spec = {**current["Spec"], "Availability": "drain"}
                version = str(current["Version"]["Index"])
                self._call(name, ip, "POST", f"/nodes/{node}/update", body=spec, params={"version": version})
            except (RuntimeError, KeyError, TypeError):
                continue  # gone already, or never joined: nothing to drain

    def live_tasks(self, name: str, ip: str, nodes: Sequence[str]) -> int:
        ids: list[str] = []
        for node in nodes:
            try:
                ids.append(str(self._call(name, ip, "GET", f"/nodes/{node}")["ID"]))
            except (RuntimeError, KeyError, TypeError):
                continue
        if not ids:
            return 0
        filters = json.dumps({"node": ids})
        try:
            tasks = self._call(name, ip, "GET", "/tasks", params={"filters": filters}) or []
        except RuntimeError:
            return -1
        return sum(str((t.get("Status") or {}).get("State", "")).lower() in LIVE_TASK_STATES for t in tasks)

    def remove_nodes(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        for node in nodes:
            try:
                self._call(name, ip, "DELETE", f"/nodes/{node}", params={"force": "true"})
            except RuntimeError:
                continue


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except (ValueError, AttributeError):
        return r.text


class ExecChannel:
    """The ``docker`` CLI inside the node, through the provider's exec."""

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx
        self._nodes: dict[str, NodeInfo] = {}

    def _node(self, name: str) -> NodeInfo:
        if name not in self._nodes:
            self._nodes = {n.name: n for n in self._ctx.provider.list_nodes(self._ctx.spec.uuid)}
        if name not in self._nodes:
            raise RuntimeError(f"node {name} is missing")
        return self._nodes[name]

    def _docker(self, name: str, *args: str, timeout: float = 30.0, ok_if: str | None = None) -> str:
        r = self._ctx.provider.exec(self._node(name), ["docker", *args], timeout=timeout)
        if not r.ok:
            message = (r.stderr or r.stdout).strip()
            if ok_if is not None and ok_if in message:
                return ""
            raise RuntimeError(f"`docker {' '.join(args[:3])}` on {name} failed: {message[-300:]}")
        return r.stdout.strip()

    def swarm_state(self, name: str, ip: str) -> str:
        return self._docker(name, "info", "--format", "{{.Swarm.LocalNodeState}}")

    def init(self, name: str, ip: str) -> None:
        self._docker(
            name, "swarm", "init", "--advertise-addr", ip, "--listen-addr", f"{ip}:{SWARM_PORT}",
            timeout=60, ok_if=ALREADY_IN_SWARM,
        )  # fmt: skip

    def join_token(self, name: str, ip: str, role: str) -> str:
        return self._docker(name, "swarm", "join-token", "-q", role)

    def join(self, name: str, ip: str, token: str, leader_ip: str) -> None:
        self._docker(
            name, "swarm", "join", "--token", token, "--advertise-addr", ip, f"{leader_ip}:{SWARM_PORT}",
            timeout=60, ok_if=ALREADY_IN_SWARM,
        )  # fmt: skip

    def remove_ingress(self, name: str, ip: str) -> None:
        # The CLI asks for confirmation before removing the routing mesh: answer it.
        r = self._ctx.provider.exec(
            self._node(name), ["docker", "network", "rm", "ingress"], stdin=b"y\n", timeout=60
        )
        message = (r.stderr or r.stdout).strip()
        if not r.ok and "not found" not in message.lower() and "no such" not in message.lower():
            raise RuntimeError(f"`docker network rm ingress` on {name} failed: {message[-300:]}")

    def node_states(self, name: str, ip: str) -> dict[str, str]:
        try:
            out = self._docker(name, "node", "ls", "--format", "{{.Hostname}} {{.Status}}", timeout=15)
        except RuntimeError:
            return {}
        states: dict[str, str] = {}
        for line in out.splitlines():
            host, _, status = line.strip().partition(" ")
            _merge_state(states, host, status)
        return states

    def version(self, name: str, ip: str) -> str:
        return self._docker(name, "version", "--format", "{{.Server.Version}}")

    def drain(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        for node in nodes:
            self._ctx.provider.exec(
                self._node(name), ["docker", "node", "update", "--availability", "drain", node], timeout=15
            )

    def live_tasks(self, name: str, ip: str, nodes: Sequence[str]) -> int:
        r = self._ctx.provider.exec(
            self._node(name), ["docker", "node", "ps", *nodes, "--format", "{{.CurrentState}}"], timeout=15
        )
        if not r.ok:
            return -1
        states = [line.split()[0].lower() for line in r.stdout.splitlines() if line.strip()]
        return sum(state in LIVE_TASK_STATES for state in states)

    def remove_nodes(self, name: str, ip: str, nodes: Sequence[str]) -> None:
        for node in nodes:
            self._ctx.provider.exec(self._node(name), ["docker", "node", "rm", "--force", node], timeout=15)
