"""Periodic health: ONE provider listing per cycle for all clusters, then a cheap native
check per cluster (the COE driver's ``observe``), and self-healing.

* ``health_status`` / ``health_status_reason`` are set for every settled cluster
  (HEALTHY, UNHEALTHY with per-node detail, or UNKNOWN when the check itself failed).
* With the label ``auto_healing_enabled=true``, a node that stays unhealthy past the
  grace period is replaced through an ordinary update operation (visible reason,
  one node at a time); the rules, the blast-radius guard among them, are data in
  ``flotilla.healing``. What auto-healing does or why it does not is shown under
  ``health_status_reason["auto_healing"]``. COE-neutral: the driver's ``observe`` says
  which nodes are unhealthy and why; its ``update`` plan replaces a worker, its
  ``repair`` plan (when it has one) a master.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select

from flotilla import healing
from flotilla.certs.keys import SecretBox
from flotilla.conductor.providers import ProviderPool
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import NodeInfo, TlsMaterial, VolumeUsage
from flotilla.drivers.base import ClusterSpec, Observation, Provider
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import FlotillaError
from flotilla.lifecycle import Status
from flotilla.services import certificates, cluster_reports, clusters, operations, repairs, specs

log = logging.getLogger(__name__)

SETTLED = (Status.CREATE_COMPLETE.value, Status.UPDATE_COMPLETE.value, Status.ROLLBACK_COMPLETE.value)
#: A cluster left FAILED still runs (some of) its nodes: its health keeps being checked so
#: that health_status says what is left, but it is never auto-healed (that needs a settled
#: cluster; the user decides: update again, or delete).
FAILED = (Status.CREATE_FAILED.value, Status.UPDATE_FAILED.value)
OBSERVED = SETTLED + FAILED


HealthPolicy = healing.HealPolicy  # the settings' defaults; labels may override per cluster


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
    #: (cluster uuid, node name) -> time (epoch seconds) it was first seen unhealthy
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
        # Clusters gone or busy (an operation runs) start their grace periods afresh.
        self._since = {k: t for k, t in self._since.items() if k[0] in cluster_specs}
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
                decision = healing.Decision()
                if obs.health == "UNHEALTHY" and c.status in SETTLED:
                    decision = self._decide(c, spec, obs)
                else:
                    self._forget(c.uuid)
                if decision.note:
                    obs = Observation(obs.health, {**obs.reasons, healing.NOTE_KEY: decision.note},
                                      obs.unhealthy_nodes)  # fmt: skip
                changed += self._save(c.uuid, obs)
                if decision.victim is not None:
                    self._repair(c, spec, decision)
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

    def _decide(self, cluster: m.Cluster, spec: ClusterSpec, obs: Observation) -> healing.Decision:
        now = time.time()
        nodes = {*spec.master.names, *spec.worker.names}
        bad = [n for n in obs.unhealthy_nodes if n in nodes]
        for name in bad:
            self._since.setdefault((cluster.uuid, name), now)
        for key in [k for k in self._since if k[0] == cluster.uuid and k[1] not in bad]:
            del self._since[key]
        if not healing.enabled(cluster.labels):
            return healing.Decision()
        return healing.decide(
            healing.policy_for(cluster.labels, self.policy),
            masters=spec.master.names, workers=spec.worker.names, unhealthy=bad, reasons=obs.reasons,
            since={k[1]: t for k, t in self._since.items() if k[0] == cluster.uuid}, now=now,
            repairable=self._repairable(spec),
        )  # fmt: skip

    def _repair(self, cluster: m.Cluster, spec: ClusterSpec, decision: healing.Decision) -> None:
        """Replace one node through an ordinary operation (one at a time: none is started
        while another operation runs)."""
        victim = decision.victim
        assert victim is not None
        with self.db.session() as s:
            row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster.uuid).with_for_update()).first()
            if row is None or row.status not in SETTLED or operations.active_for(s, row.uuid) is not None:
                return
            repairs.replace_node(
                s, row, victim, decision.why, coes=self.coes,
                limits=clusters.Limits.from_settings(self.providers.settings),
            )  # fmt: skip
        self._since.pop((cluster.uuid, victim), None)
        log.warning("cluster %s: auto-healing replaces %s (%s)", cluster.uuid, victim, decision.why)

    def _repairable(self, spec: ClusterSpec) -> frozenset[str]:
        """Workers always (every COE plans the resize that replaces one); masters when the
        COE driver plans a ``repair`` of one (e.g. Kubernetes with several masters)."""
        driver = self.coes.get(spec.coe)
        roles = {"worker"}
        if driver is not None and spec.master.names:
            probe = replace(spec, nodes_to_remove=(spec.master.names[0],))
            if driver.plan("repair", probe):
                roles.add("master")
        return frozenset(roles)


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
