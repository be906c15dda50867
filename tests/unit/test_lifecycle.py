"""The lifecycle tables, row by row: every edge listed, everything else refused (409)."""

from __future__ import annotations

import pytest

from flotilla import lifecycle
from flotilla.errors import InvalidTransition
from flotilla.lifecycle import Event as E
from flotilla.lifecycle import Status as S

CLUSTER_EDGES = [
    (S.CREATE_IN_PROGRESS, E.SUCCEEDED, S.CREATE_COMPLETE),
    (S.CREATE_IN_PROGRESS, E.FAILED, S.CREATE_FAILED),
    (S.UPDATE_IN_PROGRESS, E.SUCCEEDED, S.UPDATE_COMPLETE),
    (S.UPDATE_IN_PROGRESS, E.FAILED, S.UPDATE_FAILED),
    (S.DELETE_IN_PROGRESS, E.SUCCEEDED, S.DELETE_COMPLETE),
    (S.DELETE_IN_PROGRESS, E.FAILED, S.DELETE_FAILED),
    (S.ROLLBACK_IN_PROGRESS, E.SUCCEEDED, S.ROLLBACK_COMPLETE),
    (S.ROLLBACK_IN_PROGRESS, E.FAILED, S.ROLLBACK_FAILED),
    (S.CREATE_COMPLETE, E.UPDATE_REQUESTED, S.UPDATE_IN_PROGRESS),
    (S.UPDATE_COMPLETE, E.UPDATE_REQUESTED, S.UPDATE_IN_PROGRESS),
    (S.ROLLBACK_COMPLETE, E.UPDATE_REQUESTED, S.UPDATE_IN_PROGRESS),
    (S.UPDATE_FAILED, E.UPDATE_REQUESTED, S.UPDATE_IN_PROGRESS),  # a failed resize is retried
    *[
        (s, E.DELETE_REQUESTED, S.DELETE_IN_PROGRESS)
        for s in S
        if s not in (S.DELETE_IN_PROGRESS, S.DELETE_COMPLETE)
    ],
]
# Nodegroups follow the same edges: a group is resized from the same statuses (also
# UPDATE_FAILED, a retry), deleted with its cluster, and ends with its operation.
NODEGROUP_EDGES = CLUSTER_EDGES


@pytest.mark.parametrize(("current", "event", "to"), CLUSTER_EDGES)
def test_cluster_edge(current: S, event: E, to: S) -> None:
    assert lifecycle.next_status(current, event) == to
    assert lifecycle.next_status(current.value, event) == to


@pytest.mark.parametrize(("current", "event", "to"), NODEGROUP_EDGES)
def test_nodegroup_edge(current: S, event: E, to: S) -> None:
    assert lifecycle.next_nodegroup_status(current, event) == to


def _refused(edges: list[tuple[S, E, S]]) -> list[tuple[S, E]]:
    listed = {(s, e) for s, e, _ in edges}
    return [(s, e) for s in S for e in E if (s, e) not in listed]


def test_the_tables_are_exactly_the_listed_edges() -> None:
    assert lifecycle.TRANSITIONS == {(s, e): t for s, e, t in CLUSTER_EDGES}
    assert lifecycle.NODEGROUP_TRANSITIONS == {(s, e): t for s, e, t in NODEGROUP_EDGES}


@pytest.mark.parametrize(("current", "event"), _refused(CLUSTER_EDGES))
def test_cluster_refuses(current: S, event: E) -> None:
    with pytest.raises(InvalidTransition) as err:
        lifecycle.next_status(current, event)
    assert err.value.http_status == 409
    assert current.value in err.value.message


@pytest.mark.parametrize(("current", "event"), _refused(NODEGROUP_EDGES))
def test_nodegroup_refuses(current: S, event: E) -> None:
    with pytest.raises(InvalidTransition, match=current.value):
        lifecycle.next_nodegroup_status(current, event)


@pytest.mark.parametrize(
    ("current", "event", "verb"),
    [(S.CREATE_IN_PROGRESS, E.UPDATE_REQUESTED, "Updating"), (S.DELETE_IN_PROGRESS, E.DELETE_REQUESTED, "Deleting"),
     (S.CREATE_COMPLETE, E.SUCCEEDED, "Changing")],
)  # fmt: skip
def test_refusals_say_what_was_asked(current: S, event: E, verb: str) -> None:
    with pytest.raises(InvalidTransition, match=f'^{verb} a cluster when status is "{current.value}"'):
        lifecycle.next_status(current, event)


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="NOT_A_STATUS"):
        lifecycle.next_status("NOT_A_STATUS", E.SUCCEEDED)
