"""Cluster statuses, the events that move them, and the transition table, as data.

Only ``services/`` call :func:`next_status`, inside the transaction that writes the
row (with compare-and-set on the old status). Workers, periodic jobs and drivers
report events; they never write statuses.
"""

from __future__ import annotations

from enum import StrEnum

from flotilla.errors import InvalidTransition


class Status(StrEnum):
    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_FAILED = "CREATE_FAILED"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_FAILED = "UPDATE_FAILED"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_FAILED = "DELETE_FAILED"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    ROLLBACK_IN_PROGRESS = "ROLLBACK_IN_PROGRESS"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    ROLLBACK_COMPLETE = "ROLLBACK_COMPLETE"


class Event(StrEnum):
    UPDATE_REQUESTED = "update_requested"  # services.scaling.update / resize, services.clusters.rotate_ca
    DELETE_REQUESTED = "delete_requested"  # services.clusters.delete
    SUCCEEDED = "succeeded"  # services.operations.complete
    FAILED = "failed"  # services.operations.fail (error, timeout, resources vanished)


class Health(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"


S = Status
E = Event

#: Statuses from which an update (scale, resize, CA rotation) may start.
UPDATABLE: frozenset[Status] = frozenset({S.CREATE_COMPLETE, S.UPDATE_COMPLETE, S.ROLLBACK_COMPLETE})
#: A failed update may be retried by another resize.
RESIZABLE: frozenset[Status] = UPDATABLE | {S.UPDATE_FAILED}
IN_PROGRESS: frozenset[Status] = frozenset(
    {S.CREATE_IN_PROGRESS, S.UPDATE_IN_PROGRESS, S.DELETE_IN_PROGRESS, S.ROLLBACK_IN_PROGRESS}
)
FAILED: frozenset[Status] = frozenset({S.CREATE_FAILED, S.UPDATE_FAILED, S.DELETE_FAILED, S.ROLLBACK_FAILED})

#: (from, event) -> to. Anything not listed is refused with 409.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATE_IN_PROGRESS, E.SUCCEEDED): S.CREATE_COMPLETE,
    (S.CREATE_IN_PROGRESS, E.FAILED): S.CREATE_FAILED,
    (S.UPDATE_IN_PROGRESS, E.SUCCEEDED): S.UPDATE_COMPLETE,
    (S.UPDATE_IN_PROGRESS, E.FAILED): S.UPDATE_FAILED,
    (S.DELETE_IN_PROGRESS, E.SUCCEEDED): S.DELETE_COMPLETE,
    (S.DELETE_IN_PROGRESS, E.FAILED): S.DELETE_FAILED,
    (S.ROLLBACK_IN_PROGRESS, E.SUCCEEDED): S.ROLLBACK_COMPLETE,
    (S.ROLLBACK_IN_PROGRESS, E.FAILED): S.ROLLBACK_FAILED,
    **{(s, E.UPDATE_REQUESTED): S.UPDATE_IN_PROGRESS for s in RESIZABLE},
    # Delete is allowed from every state but an ongoing delete (409 for the second of two
    # deletes). Deleting a cluster whose create or update still runs cancels that
    # operation: its worker stops at the next checkpoint, then the delete runs.
    **{
        (s, E.DELETE_REQUESTED): S.DELETE_IN_PROGRESS
        for s in Status
        if s not in {S.DELETE_IN_PROGRESS, S.DELETE_COMPLETE}
    },
}


#: Nodegroups, (from, event) -> to. A group moves when the operation that involves it is
#: requested (a resize or upgrade of the group: UPDATE_REQUESTED; the cluster's delete:
#: DELETE_REQUESTED, also a retry from DELETE_FAILED) and when that operation ends
#: (SUCCEEDED / FAILED from the group's *_IN_PROGRESS). Groups an operation does not
#: involve keep their status.
NODEGROUP_TRANSITIONS: dict[tuple[Status, Event], Status] = {
    **{(s, e): to for (s, e), to in TRANSITIONS.items() if e in (E.SUCCEEDED, E.FAILED)},
    # A group may be resized while the cluster is settled, or again after its resize failed.
    **{(s, E.UPDATE_REQUESTED): S.UPDATE_IN_PROGRESS for s in RESIZABLE},
    **{
        (s, E.DELETE_REQUESTED): S.DELETE_IN_PROGRESS
        for s in Status
        if s not in {S.DELETE_IN_PROGRESS, S.DELETE_COMPLETE}
    },
}


def next_nodegroup_status(current: Status | str, event: Event) -> Status:
    """The status a nodegroup reaches from ``current`` on ``event``.

    Raises :class:`InvalidTransition` (HTTP 409) when the table has no such edge.
    """
    cur = Status(current)
    try:
        return NODEGROUP_TRANSITIONS[(cur, event)]
    except KeyError:
        raise InvalidTransition(
            f'A nodegroup in status "{cur}" cannot take the event {event.value}.'
        ) from None


def next_status(current: Status | str, event: Event) -> Status:
    """The status reached from ``current`` on ``event``.

    Raises :class:`InvalidTransition` (HTTP 409) when the table has no such edge.
    """
    cur = Status(current)
    try:
        return TRANSITIONS[(cur, event)]
    except KeyError:
        verb = {E.UPDATE_REQUESTED: "Updating", E.DELETE_REQUESTED: "Deleting"}.get(event, "Changing")
        raise InvalidTransition(
            f'{verb} a cluster when status is "{cur}" is not supported. '
            f"Wait for the current operation to end."
        ) from None
