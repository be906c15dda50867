"""What a fake node answers to ``docker ...`` run through ``FakeProvider.exec``.

Fake nodes run nothing, yet COE drivers talk to their nodes' daemons through the node
handle (exec) exactly as on a real provider. This small model of a Docker daemon in
swarm mode answers the commands the swarm driver uses, so the driver needs no
"is this the fake provider?" checks: a node's daemon answers while the node runs, joins
and leaves its cluster's swarm, and ``docker node ls`` reports members ``Ready`` while
their node runs (``Down`` when stopped or gone). A recreated node (new provider id)
starts outside the swarm, as a fresh container would.

Anything else returns success with no output (the fake's old canned answer).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flotilla.domain import ExecResult, NodeInfo

VERSION = "24.0.0-fake"
ALREADY = "Error response from daemon: This node is already part of a swarm."

#: node name -> (provider id, running) as the fake provider sees it now; None when gone.
NodeLookup = Callable[[str], tuple[str, bool] | None]


@dataclass
class _Swarm:
    members: dict[str, str] = field(default_factory=dict)  # node name -> "manager" | "worker"
    joined: set[str] = field(default_factory=set)  # provider ids of containers that joined


@dataclass
class FakeDocker:
    lookup: NodeLookup
    swarms: dict[str, _Swarm] = field(default_factory=dict)  # cluster uuid -> swarm
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, node: NodeInfo, args: Sequence[str]) -> ExecResult:
        with self._lock:
            swarm = self.swarms.setdefault(node.cluster_uuid, _Swarm())
            return self._run(swarm, node, list(args))

    def _in(self, swarm: _Swarm, node: NodeInfo) -> bool:
        return node.provider_id in swarm.joined

    def _run(self, swarm: _Swarm, node: NodeInfo, args: list[str]) -> ExecResult:
        head = args[:2]
        if args[:1] == ["version"]:
            return ExecResult(0, VERSION + "\n", "")
        if args[:1] == ["info"]:
            return ExecResult(0, ("active" if self._in(swarm, node) else "inactive") + "\n", "")
        if head in (["swarm", "init"], ["swarm", "join"]):
            if self._in(swarm, node):
                return ExecResult(1, "", ALREADY + "\n")
            role = "manager" if head[1] == "init" or "manager" in " ".join(args) else "worker"
            swarm.members[node.name] = role
            swarm.joined.add(node.provider_id)
            return ExecResult(0, "", "")
        if head == ["swarm", "join-token"]:
            if swarm.members.get(node.name) != "manager" or not self._in(swarm, node):
                return ExecResult(1, "", "Error response from daemon: This node is not a swarm manager.\n")
            return ExecResult(0, f"SWMTKN-fake-{args[-1]}\n", "")
        if head == ["node", "ls"]:
            if swarm.members.get(node.name) != "manager" or not self._in(swarm, node):
                return ExecResult(1, "", "Error response from daemon: This node is not a swarm manager.\n")
            lines = []
            for name in sorted(swarm.members):
                seen = self.lookup(name)
                ready = seen is not None and seen[1] and seen[0] in swarm.joined
                lines.append(f"{name} {'Ready' if ready else 'Down'}")
            return ExecResult(0, "\n".join(lines) + "\n", "")
        if head == ["node", "rm"]:
            for name in args[2:]:
                if not name.startswith("-"):
                    swarm.members.pop(name, None)
            return ExecResult(0, "", "")
        return ExecResult(0, "", "")
