"""The stacked etcd's membership, changed from a healthy master when a master is replaced.

The node image carries no etcdctl, so the calls go to etcd's JSON gateway
(``POST /v3/cluster/member/{list,add,remove}``) with curl on a master, over TLS with
the API server's etcd client certificate (etcd trusts the cluster CA): provider-neutral,
through ``Provider.exec``, as every step that talks to a node.

Order matters (etcd's runtime reconfiguration guide): remove the dead member first, so
the cluster never counts a member that cannot vote, then add the new one, then start it
with ``--initial-cluster-state=existing``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flotilla.domain import NodeInfo
from flotilla.drivers.base import StepContext

from .bootstrap import PKI

PEER_PORT = 2380
CLIENT = "https://127.0.0.1:2379"


@dataclass(frozen=True)
class Member:
    id: str
    #: Empty for a member added but not started yet.
    name: str
    peer_urls: tuple[str, ...]


def peer_url(address: str) -> str:
    return f"https://{address}:{PEER_PORT}"


def _call(ctx: StepContext, node: NodeInfo, path: str, body: dict[str, Any]) -> dict[str, Any]:
    argv = [
        "curl", "-sS", "--fail-with-body", "--max-time", "10", "--cacert", f"{PKI}/ca.crt",
        "--cert", f"{PKI}/apiserver-etcd-client.crt", "--key", f"{PKI}/apiserver-etcd-client.key",
        "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-", f"{CLIENT}{path}",
    ]  # fmt: skip
    r = ctx.provider.exec(node, argv, stdin=json.dumps(body).encode(), timeout=20)
    if not r.ok:
        raise RuntimeError(f"etcd on {node.name}: {path} failed: {(r.stdout + r.stderr).strip()[:300]}")
    try:
        data: dict[str, Any] = json.loads(r.stdout or "{}")
    except ValueError:
        raise RuntimeError(f"etcd on {node.name}: {path} answered {r.stdout[:200]!r}") from None
    return data


def members(ctx: StepContext, node: NodeInfo) -> list[Member]:
    data = _call(ctx, node, "/v3/cluster/member/list", {"linearizable": True})
    return [
        Member(str(m.get("ID", "")), str(m.get("name", "")), tuple(m.get("peerURLs") or ()))
        for m in data.get("members") or []
    ]


def remove(ctx: StepContext, node: NodeInfo, member: Member) -> None:
    _call(ctx, node, "/v3/cluster/member/remove", {"ID": member.id})


def add(ctx: StepContext, node: NodeInfo, address: str) -> None:
    _call(ctx, node, "/v3/cluster/member/add", {"peerURLs": [peer_url(address)]})


def healthy_member(ctx: StepContext, candidates: Sequence[NodeInfo]) -> tuple[NodeInfo, list[Member]]:
    """The first running master whose etcd answers a linearizable member list (so the
    cluster has quorum), with that list. Raises when none does: no quorum, and replacing
    a master cannot restore it."""
    errors = []
    for node in candidates:
        if node.state != "running":
            errors.append(f"{node.name}: node {node.state}")
            continue
        try:
            return node, members(ctx, node)
        except RuntimeError as exc:
            errors.append(str(exc))
    raise RuntimeError(
        "no master's etcd answers with quorum, so no master can be replaced (restore the cluster "
        f"from a backup or recreate it): {'; '.join(errors) or 'no running master'}"
    )
