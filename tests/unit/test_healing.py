"""The auto-healing rules (``flotilla.healing``): grace period, one node at a time, the
blast-radius guard with its numbers, which roles are replaced, the per-cluster labels."""

from __future__ import annotations

import pytest

from flotilla import healing
from flotilla.errors import Invalid
from flotilla.healing import HealPolicy, decide

MASTERS = ("c-master-0",)
WORKERS = ("c-node-0", "c-node-1", "c-node-2")
POLICY = HealPolicy(grace_seconds=30, max_unhealthy_share=0.5)


def _decide(
    unhealthy: dict[str, float], now: float, policy: HealPolicy = POLICY, **kw: object
) -> healing.Decision:
    """``unhealthy``: node -> when it was first seen unhealthy."""
    reasons = {n: f"reason of {n}" for n in unhealthy}
    return decide(
        policy, masters=MASTERS, workers=WORKERS, unhealthy=list(unhealthy), reasons=reasons,
        since=unhealthy, now=now, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_nothing_unhealthy_nothing_to_do() -> None:
    assert _decide({}, now=100) == healing.Decision()


def test_within_the_grace_period_the_note_says_when() -> None:
    d = _decide({"c-node-1": 1000.0}, now=1010.0)
    assert d.victim is None
    assert d.note is not None and "c-node-1 will be replaced at 00:17:10 UTC" in d.note, d.note
    assert "grace period 30 s" in d.note


def test_past_the_grace_period_the_node_is_replaced_with_its_reason() -> None:
    d = _decide({"c-node-1": 1000.0}, now=1030.0)
    assert (d.victim, d.why, d.note) == ("c-node-1", "reason of c-node-1", None)


def test_one_node_at_a_time_the_first_due() -> None:
    d = _decide({"c-node-2": 900.0, "c-node-0": 1000.0}, now=1030.0)
    assert d.victim == "c-node-0"  # both due: the first in the nodegroup's order
    d = _decide({"c-node-2": 900.0, "c-node-0": 1020.0}, now=1030.0)
    assert d.victim == "c-node-2"  # only c-node-2 is due
    assert d.note is None


def test_the_guard_stops_remediation_and_says_why_with_numbers() -> None:
    d = _decide({"c-node-0": 0.0, "c-node-1": 0.0, "c-node-2": 0.0}, now=1000.0)
    assert d.victim is None
    assert d.note == (
        "paused: 3 of 4 nodes are unhealthy (c-node-0, c-node-1, c-node-2), more than the 50% allowed "
        "(2 of 4); no node is replaced while that many fail at once: check the host, the network or the image"
    )
    # at the share exactly, remediation goes on
    assert _decide({"c-node-0": 0.0, "c-node-1": 0.0}, now=1000.0).victim == "c-node-0"


def test_the_guard_counts_masters_too() -> None:
    d = _decide({"c-master-0": 0.0, "c-node-0": 0.0, "c-node-1": 0.0}, now=1000.0)
    assert d.victim is None and d.note is not None and d.note.startswith("paused: 3 of 4 nodes")


def test_a_master_is_replaced_only_when_the_driver_can() -> None:
    d = _decide({"c-master-0": 0.0}, now=1000.0)
    assert d.victim is None
    assert d.note == "c-master-0 is a master, which this cluster cannot replace; not healed"
    d = _decide({"c-master-0": 0.0}, now=1000.0, repairable=("worker", "master"))
    assert d.victim == "c-master-0"


def test_workers_before_masters() -> None:
    d = _decide({"c-master-0": 0.0, "c-node-2": 10.0}, now=1000.0, repairable=("worker", "master"))
    assert d.victim == "c-node-2"


def test_unknown_names_are_not_nodes() -> None:
    d = decide(POLICY, masters=MASTERS, workers=WORKERS, unhealthy=["api", "c-lb-0"], reasons={},
               since={}, now=0.0)  # fmt: skip
    assert d == healing.Decision()


def test_labels_override_the_settings() -> None:
    labels = {healing.GRACE_LABEL: "5", healing.SHARE_LABEL: "34%"}
    assert healing.policy_for(labels, POLICY) == HealPolicy(grace_seconds=5, max_unhealthy_share=0.34)
    assert healing.policy_for({healing.SHARE_LABEL: "0.25"}, POLICY).max_unhealthy_share == 0.25
    assert healing.policy_for({}, POLICY) == POLICY
    assert healing.policy_for({healing.GRACE_LABEL: "soon"}, POLICY) == POLICY  # not checked: setting
    assert healing.enabled({"auto_healing_enabled": "True"}) and not healing.enabled({})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (healing.GRACE_LABEL, "-1"), (healing.GRACE_LABEL, "soon"), (healing.GRACE_LABEL, "90000"),
        (healing.SHARE_LABEL, "0"), (healing.SHARE_LABEL, "150%"), (healing.SHARE_LABEL, "half"),
        (healing.SHARE_LABEL, "2"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_with_what_is_accepted(key: str, value: str) -> None:
    with pytest.raises(Invalid, match=f"Invalid label {key}={value}: expected"):
        healing.check_labels({key: value})
