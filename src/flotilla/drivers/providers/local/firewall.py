"""Flotilla's own iptables rules for cluster networks.

Flotilla's dockerd runs with ``--iptables=false``: a dockerd that starts flushes the
``DOCKER-ISOLATION-STAGE-*`` chains every engine on the host shares, so a second
Flotilla data dir (or a system Docker) starting used to wipe the isolation of the
first one's clusters. Instead, the local provider installs per network, in chains only
Flotilla uses (``FLOTILLA-FORWARD`` and ``FLOTILLA-INPUT``, jumped to first from
``FORWARD`` and ``INPUT``), for IPv4 and IPv6:

* ``-i BR -o BR [-s NET -d NET] -j ACCEPT``: nodes of the cluster reach each other
  (also when the host's FORWARD policy is DROP). With ``routed`` the addresses are
  not checked, for routed pod networks (Kubernetes) between the cluster's nodes.
* ``-i BR -j DROP`` and ``-o BR -j DROP``: nothing else is forwarded from or to the
  cluster's bridge, so clusters cannot reach each other (nor anything beyond the host)
  even when the host forwards packets (``ip_forward=1``, e.g. for a system Docker).
* ``INPUT -i BR``: only replies to connections the host opened (the conductor talking
  to a node's daemon) are let through; a node cannot open a connection to a service of
  the host (its bridge gateway is a host address).

Every rule carries the comment ``flotilla engine=E cluster=C net=N`` so :func:`rules`
(leak checks) finds it and :func:`remove` deletes it; a chain left empty is removed
with its jump. All changes hold a host-wide lock (several engines, several processes).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flotilla.errors import FlotillaError

log = logging.getLogger(__name__)

#: (our chain, the built-in chain that jumps to it)
CHAINS = (("FLOTILLA-FORWARD", "FORWARD"), ("FLOTILLA-INPUT", "INPUT"))
FAMILIES = ("iptables", "ip6tables")
_LOCK_NAME = "flotilla-iptables.lock"


@dataclass(frozen=True)
class NetworkRules:
    """The rules of one cluster network on one engine."""

    engine_id: str
    cluster_uuid: str
    network: str
    bridge: str
    subnet: str
    routed: bool = False

    @property
    def tag(self) -> str:
        return f"flotilla engine={self.engine_id} cluster={self.cluster_uuid} net={self.network}"

    def chain_rules(self, family: str, chain: str) -> list[list[str]]:
        """Rule specs (without ``-A CHAIN``) for one family and one of our chains, in order."""
        br, note = self.bridge, ["-m", "comment", "--comment", self.tag]
        if chain == "FLOTILLA-INPUT":
            replies = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"]
            return [["-i", br, *replies, *note, "-j", "RETURN"], ["-i", br, *note, "-j", "DROP"]]
        same = ["-i", br, "-o", br]
        if family == "iptables" and not self.routed:
            same += ["-s", self.subnet, "-d", self.subnet]
        return [
            [*same, *note, "-j", "ACCEPT"],
            ["-i", br, *note, "-j", "DROP"],
            ["-o", br, *note, "-j", "DROP"],
        ]


def available() -> bool:
    """Whether this process can manage the host's iptables (root, iptables installed)."""
    return os.geteuid() == 0 and shutil.which("iptables") is not None


def _run(family: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([family, "-w", "10", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and res.returncode != 0:
        raise FlotillaError(f"{family} {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res


def _families() -> list[str]:
    return [f for f in FAMILIES if shutil.which(f) and _run(f, "-S", "INPUT", check=False).returncode == 0]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    base = Path("/run") if os.access("/run", os.W_OK) else Path("/tmp")
    fd = os.open(base / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _listed(family: str, chain: str) -> list[list[str]]:
    """The chain's rules as argument lists (``["-A", chain, ...]``); [] if it does not exist."""
    res = _run(family, "-S", chain, check=False)
    if res.returncode != 0:
        return []
    return [shlex.split(line) for line in res.stdout.splitlines() if line.startswith("-A ")]


def _ensure_chain(family: str, chain: str, parent: str) -> None:
    _run(family, "-N", chain, check=False)  # "already exists" is fine
    if _run(family, "-C", parent, "-j", chain, check=False).returncode != 0:
        _run(family, "-I", parent, "1", "-j", chain)


def _drop_chain_if_empty(family: str, chain: str, parent: str) -> None:
    if _run(family, "-S", chain, check=False).returncode != 0 or _listed(family, chain):
        return
    while _run(family, "-D", parent, "-j", chain, check=False).returncode == 0:
        pass
    _run(family, "-X", chain, check=False)


def ensure(net: NetworkRules) -> None:
    """Install the network's rules (idempotent: nothing changes when all are in place)."""
    with _locked():
        for family in _families():
            for chain, parent in CHAINS:
                _ensure_chain(family, chain, parent)
                wanted = net.chain_rules(family, chain)
                present = [r for r in _listed(family, chain) if net.tag in r]
                if len(present) == len(wanted) and all(
                    _run(family, "-C", chain, *rule, check=False).returncode == 0 for rule in wanted
                ):
                    continue
                for rule in present:
                    _run(family, "-D", *rule[1:], check=False)
                for rule in wanted:
                    _run(family, "-A", chain, *rule)
    log.info("iptables rules for network %s (bridge %s, %s) in place", net.network, net.bridge, net.subnet)


def _matches(rule: list[str], engine_id: str | None, cluster_uuid: str | None, network: str | None) -> bool:
    comment = rule[rule.index("--comment") + 1] if "--comment" in rule else ""
    words = comment.split()
    if not words or words[0] != "flotilla":
        return False
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    wanted = {"engine": engine_id, "cluster": cluster_uuid, "net": network}
    return all(v is None or fields.get(k) == v for k, v in wanted.items())


def rules(
    *, engine_id: str | None = None, cluster_uuid: str | None = None, network: str | None = None
) -> list[str]:
    """Flotilla's rules on this host matching the filters, as ``iptables -S`` lines."""
    if not available():
        return []
    found: list[str] = []
    for family in _families():
        for chain, _ in CHAINS:
            found += [
                f"{family} {shlex.join(r)}"
                for r in _listed(family, chain)
                if _matches(r, engine_id, cluster_uuid, network)
            ]
    return found


def remove(
    *, engine_id: str | None = None, cluster_uuid: str | None = None, network: str | None = None
) -> int:
    """Delete Flotilla's rules matching the filters (all given filters must match);
    chains left empty go with their jumps. Returns how many rules were deleted."""
    if not available():
        return 0
    deleted = 0
    with _locked():
        for family in _families():
            for chain, parent in CHAINS:
                for rule in _listed(family, chain):
                    if _matches(rule, engine_id, cluster_uuid, network):
                        if _run(family, "-D", *rule[1:], check=False).returncode == 0:
                            deleted += 1
                _drop_chain_if_empty(family, chain, parent)
    return deleted


def networks(engine_id: str) -> set[tuple[str, str]]:
    """(cluster uuid, network) of every network this engine has rules for."""
    found: set[tuple[str, str]] = set()
    for line in rules(engine_id=engine_id):
        comment = shlex.split(line)
        words = comment[comment.index("--comment") + 1].split()
        fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        found.add((fields.get("cluster", ""), fields.get("net", "")))
    return found
