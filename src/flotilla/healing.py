"""Auto-healing as data: which node to replace now, or why nothing is replaced. Pure (no
I/O, no clock): the conductor's health monitor feeds it an observation and the times it
first saw each node unhealthy, and acts on the answer. The same rules for every COE.

The rules (after Cluster API's MachineHealthCheck and Magnum's auto-healer):

* Only with the label ``auto_healing_enabled=true``.
* A node is replaced once it has been unhealthy for the grace period
  (setting ``conductor.health_grace``, label ``auto_healing_grace_seconds``), so a node
  that restarts or a short API hiccup does not cost a node.
* One node at a time: the replacement is one ordinary update operation, and the next
  node waits for the next health cycle after it (the cluster is then settled again).
* The blast-radius guard: when more than the allowed share of the cluster's nodes is
  unhealthy (setting ``conductor.max_unhealthy_share``, label
  ``auto_healing_max_unhealthy`` as ``"40%"`` or ``"0.4"``), nothing is replaced and the
  reason says so, with the numbers: that many failures at once point at the host, the
  network or the image, which new nodes would not fix.
* Only roles the COE driver can replace (``repairable``): workers always; masters when
  the driver plans a master replacement (an HA control plane).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flotilla.errors import Invalid

ENABLED_LABEL = "auto_healing_enabled"
GRACE_LABEL = "auto_healing_grace_seconds"
SHARE_LABEL = "auto_healing_max_unhealthy"
#: The key of ``health_status_reason`` that says what auto-healing does (or why not).
NOTE_KEY = "auto_healing"


@dataclass(frozen=True)
class HealPolicy:
    #: Seconds a node stays unhealthy before it is replaced.
    grace_seconds: float = 30.0
    #: Above this share (0-1] of unhealthy nodes nothing is replaced.
    max_unhealthy_share: float = 0.5


def enabled(labels: Mapping[str, object] | None) -> bool:
    return str((labels or {}).get(ENABLED_LABEL, "false")).lower() == "true"


def parse_grace(value: object) -> float:
    """``auto_healing_grace_seconds``: a non-negative number of seconds; ``Invalid`` else."""
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise Invalid(
            f"Invalid label {GRACE_LABEL}={value}: expected seconds from 0 to 86400 (how long a node "
            "stays unhealthy before auto-healing replaces it)."
        )
    return seconds


def parse_share(value: object) -> float:
    """``auto_healing_max_unhealthy``: ``"40%"`` or ``"0.4"``, above 0 and at most 100 %."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise Invalid(
            f"Invalid label {SHARE_LABEL}={value}: expected a share of the nodes above 0 and at most "
            'all of them, as a percentage ("40%") or a fraction ("0.4"); above it auto-healing stops.'
        )
    return share


def check_labels(labels: Mapping[str, object]) -> None:
    """Raise ``Invalid`` for a malformed auto-healing label (template and cluster create)."""
    if labels.get(GRACE_LABEL) is not None:
        parse_grace(labels[GRACE_LABEL])
    if labels.get(SHARE_LABEL) is not None:
        parse_share(labels[SHARE_LABEL])


def policy_for(labels: Mapping[str, object] | None, default: HealPolicy) -> HealPolicy:
    """The cluster's policy: its labels over the service's settings (labels were checked
    when the cluster was created; a bad one here falls back to the setting)."""
    labels = labels or {}
    policy = default
    try:
        if labels.get(GRACE_LABEL) is not None:
            policy = replace(policy, grace_seconds=parse_grace(labels[GRACE_LABEL]))
        if labels.get(SHARE_LABEL) is not None:
            policy = replace(policy, max_unhealthy_share=parse_share(labels[SHARE_LABEL]))
    except Invalid:
        return default
    return policy


@dataclass(frozen=True)
class Decision:
    """What to do now: replace ``victim`` (its health reason in ``why``), and/or show
    ``note`` under ``health_status_reason["auto_healing"]``."""

    victim: str | None = None
    why: str = ""
    note: str | None = None


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def decide(
    policy: HealPolicy,
    *,
    masters: Sequence[str],
    workers: Sequence[str],
    unhealthy: Sequence[str],
    reasons: Mapping[str, str],
    since: Mapping[str, float],
    now: float,
    repairable: Collection[str] = ("worker",),
) -> Decision:
    """The decision for one cluster with auto-healing enabled.

    ``unhealthy``: the observation's unhealthy nodes; ``reasons``: its per-node reasons;
    ``since``: node -> time (seconds, same clock as ``now``) it was first seen unhealthy.
    """
    nodes = [*masters, *workers]
    bad = [n for n in nodes if n in unhealthy]
    if not bad:
        return Decision()
    total = len(nodes)
    limit = policy.max_unhealthy_share * total
    if len(bad) > limit:
        return Decision(
            note=(
                f"paused: {len(bad)} of {total} nodes are unhealthy ({', '.join(bad)}), more than the "
                f"{policy.max_unhealthy_share:.0%} allowed ({limit:g} of {total}); no node is replaced "
                "while that many fail at once: check the host, the network or the image"
            )
        )
    role = {**dict.fromkeys(masters, "master"), **dict.fromkeys(workers, "worker")}
    candidates = [n for n in bad if role[n] in repairable]
    kept = [n for n in bad if role[n] not in repairable]
    notes = [f"{n} is a {role[n]}, which this cluster cannot replace; not healed" for n in kept]
    due = [n for n in candidates if now - since.get(n, now) >= policy.grace_seconds]
    # Workers first: a master replacement moves the control plane, so it waits until the
    # workers are sound (and one operation at a time anyway).
    due.sort(key=lambda n: (role[n] != "worker", nodes.index(n)))
    if due:
        victim = due[0]
        return Decision(victim, reasons.get(victim, "unhealthy"), "; ".join(notes) or None)
    for n in candidates:
        at = since.get(n, now) + policy.grace_seconds
        notes.append(
            f"{n} will be replaced at {_clock(at)} if still unhealthy "
            f"(grace period {policy.grace_seconds:g} s)"
        )
    return Decision(note="; ".join(notes) or None)
