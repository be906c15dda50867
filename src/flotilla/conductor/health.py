"""Periodic health: ONE provider listing per cycle for all clusters, then a cheap native
check per cluster (the COE driver's ``observe``), and self-healing.

* ``health_status`` / ``health_status_reason`` are set for every settled cluster
  (HEALTHY, UNHEALTHY with per-node detail, or UNKNOWN when the check itself failed).
* With the label ``auto_healing_enabled=true``, a worker that stays unhealthy past the
  grace period is replaced through an ordinary update operation (visible reason,
  one node at a time). When more than ``max_unhealthy_share`` of the nodes are
  unhealthy at once the cluster is left alone and the reason says why: replacing
  most of a cluster is more likely to hurt than help (a host problem, a bad image).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from flotilla.certs.keys import SecretBox
from flotilla.conductor.providers import ProviderPool
from flotilla.context import SYSTEM
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import NodeInfo, TlsMaterial, VolumeUsage
from flotilla.drivers.base import ClusterSpec, Observation, Provider
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import FlotillaError
from flotilla.lifecycle import Status
from flotilla.services import certificates, cluster_reports, clusters, operations, specs
from flotilla.services.commands import Resize

log = logging.getLogger(__name__)

SETTLED = (Status.CREATE_COMPLETE.value, Status.UPDATE_COMPLETE.value, Status.ROLLBACK_COMPLETE.value)
#: A cluster left FAILED still runs (some of) its nodes: its health keeps being checked so
#: that health_status says what is left, but it is never auto-healed (that needs a settled
#: cluster; the user decides: update again, or delete).
FAILED = (Status.CREATE_FAILED.value, Status.UPDATE_FAILED.value)
OBSERVED = SETTLED + FAILED


@dataclass
class HealthPolicy:
    grace_seconds: float = 30.0
    max_unhealthy_share: float = 0.5


@dataclass
class _ObserveContext:
    """The slice of StepContext that ``observe`` may use (no progress, no outputs)."""

    db: Database
    box: SecretBox
    spec: ClusterSpec
    provider: Provider

    def client_tls(self) -> TlsMaterial:
        with self.db.reader() as s:
            return certificates.client_tls(s, self.box, self.spec.uuid)

    def progress(self, detail: str) -> None:
        return None


@dataclass
class HealthMonitor:
    db: Database
    box: SecretBox
    coes: CoeRegistry
    providers: ProviderPool
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    #: (cluster uuid, node name) -> monotonic time it was first seen unhealthy
    _since: dict[tuple[str, str], float] = field(default_factory=dict)

    def cycle(self) -> int:
        """One pass over every settled or failed cluster; returns how many changed health."""
        cluster_specs: dict[str, ClusterSpec] = {}
        with self.db.reader() as s:
            rows = []
            for c in s.scalars(select(m.Cluster).where(m.Cluster.status.in_(OBSERVED))):
                try:
                    cluster_specs[c.uuid] = specs.build(s, c)
                except Exception:  # one broken row (e.g. its template gone) must not stop the others
                    log.exception("health: cannot describe cluster %s", c.uuid)
                    continue
                rows.append(c)
        by_provider: dict[str, list[m.Cluster]] = defaultdict(list)
        for c in rows:
            by_provider[c.provider].append(c)
        changed = 0
        for name, members in by_provider.items():
            try:
                provider = self.providers.get(name)
                nodes = provider.list_nodes(None)  # one call for all clusters
            except FlotillaError as exc:
                log.warning("health: provider %s unavailable: %s", name, exc)
                for c in members:
                    changed += self._save(c.uuid, Observation("UNKNOWN", {"provider": str(exc)}))
                continue
            full = self._full_volumes(name, provider)
            for c in members:
                spec = cluster_specs[c.uuid]
                obs = with_full_volumes(self._observe(spec, provider, nodes), full.get(c.uuid, []))
                changed += self._save(c.uuid, obs)
                if obs.health == "UNHEALTHY" and c.status in SETTLED:
                    self._maybe_heal(c, spec, obs)
                else:
                    self._forget(c.uuid)
        return changed

    @staticmethod
    def _full_volumes(name: str, provider: Provider) -> dict[str, list[VolumeUsage]]:
        """cluster uuid -> its nodes whose Docker volume is full (one provider pass)."""
        try:
            usage = provider.volume_usage(None)
        except (FlotillaError, OSError) as exc:
            log.warning("health: provider %s could not measure volumes: %s", name, exc)
            return {}
        full: dict[str, list[VolumeUsage]] = defaultdict(list)
        for u in usage:
            if u.full:
                full[u.cluster_uuid].append(u)
        return full

    def _observe(self, spec: ClusterSpec, provider: Provider, nodes: Sequence[NodeInfo]) -> Observation:
        driver = self.coes.get(spec.coe)
        if driver is None:
            return Observation("UNKNOWN", {"driver": f"no enabled driver for {spec.coe}"})
        try:
            ctx = _ObserveContext(self.db, self.box, spec, provider)
            return driver.observe(spec, [n for n in nodes if n.cluster_uuid == spec.uuid], ctx)  # type: ignore[arg-type]
        except Exception as exc:
            return Observation("UNKNOWN", {"check": f"health check failed: {exc}"})

    def _save(self, cluster_uuid: str, obs: Observation) -> int:
        with self.db.session() as s:
            return int(
                cluster_reports.record_health(s, cluster_uuid, obs.health, obs.reasons, statuses=OBSERVED)
            )

    def _forget(self, cluster_uuid: str) -> None:
        for key in [k for k in self._since if k[0] == cluster_uuid]:
            del self._since[key]

    def _maybe_heal(self, cluster: m.Cluster, spec: ClusterSpec, obs: Observation) -> None:
        now = time.monotonic()
        bad = [n for n in obs.unhealthy_nodes if n in spec.worker.names]
        for name in bad:
            self._since.setdefault((cluster.uuid, name), now)
        for key in [k for k in self._since if k[0] == cluster.uuid and k[1] not in obs.unhealthy_nodes]:
            del self._since[key]
        if str((cluster.labels or {}).get("auto_healing_enabled", "false")).lower() != "true" or not bad:
            return
        total = len(spec.master.names) + len(spec.worker.names)
        if len(obs.unhealthy_nodes) > self.policy.max_unhealthy_share * total:
            self._note(cluster.uuid, obs, f"auto-healing paused: {len(obs.unhealthy_nodes)} of {total} nodes are "
                       f"unhealthy (more than {self.policy.max_unhealthy_share:.0%}); check the host")  # fmt: skip
            return
        due = [n for n in bad if now - self._since[(cluster.uuid, n)] >= self.policy.grace_seconds]
        if not due:
            return
        victim = due[0]  # one node at a time
        with self.db.session() as s:
            row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster.uuid).with_for_update()).first()
            if row is None or row.status not in SETTLED or operations.active_for(s, row.uuid) is not None:
                return
            ng = clusters.default_group(s, row, "worker")
            why = f"auto-healing: replacing {victim} ({obs.reasons.get(victim, 'unhealthy')})"
            clusters.resize(
                s, SYSTEM, row, Resize(ng.node_count, nodes_to_remove=(victim,), reason=why), coes=self.coes,
                limits=clusters.Limits.from_settings(self.providers.settings),
            )  # fmt: skip
        self._since.pop((cluster.uuid, victim), None)
        log.warning("cluster %s: auto-healing replaces %s", cluster.uuid, victim)

    def _note(self, cluster_uuid: str, obs: Observation, text: str) -> None:
        with self.db.session() as s:
            cluster_reports.note_health(s, cluster_uuid, {**obs.reasons, "auto_healing": text})


def with_full_volumes(obs: Observation, full: Sequence[VolumeUsage]) -> Observation:
    """The COE's observation, UNHEALTHY when a node's Docker volume is full (the reason
    says how full). Such nodes are not auto-healed: replacing one would drop its data."""
    if not full:
        return obs
    reasons = dict(obs.reasons)
    for u in full:
        before = reasons.get(u.node)
        ok = before is None or before in ("ok", "Ready")
        reasons[u.node] = u.describe() if ok else f"{before}; {u.describe()}"
    return Observation("UNHEALTHY", reasons, obs.unhealthy_nodes)
