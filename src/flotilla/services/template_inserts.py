"""A template create on a DBAPI connection: the API's hottest write without the ORM.

:func:`insert` validates exactly as :func:`flotilla.services.templates.create` does (the
same :func:`~flotilla.services.templates.new_row`) and runs the same two statements (the
catalog check, the INSERT) through :class:`~flotilla.db.prepared.PreparedWrite`, on a
connection in a write transaction the caller holds
(:meth:`~flotilla.db.engine.Database.dbapi_now`). It returns the new row's columns, not an
ORM object.

The rare creates that need the ORM's one-by-one catalog lookups (a named image, flavor or
network that does not exist, so the error can say which; a ``fixed_network``) raise
:class:`NeedsSession` before anything is written: run ``templates.create`` in a session
then, which gives the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Dialect, Table, insert
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.prepared import PreparedWrite
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Conflict
from flotilla.services import catalog, template_rules, templates
from flotilla.services.commands import CreateTemplate
from flotilla.services.template_rules import LabelLimits


class NeedsSession(Exception):
    """This create needs the ORM lookups; nothing was written (see the module doc)."""


@dataclass(frozen=True)
class _DbapiRefs:
    """:class:`flotilla.services.templates.Refs` on a DBAPI connection."""

    conn: Any
    dialect: Dialect

    def distro_if_all_found(
        self, *, image: str, flavors: Sequence[str], external_network: str | None
    ) -> str | None:
        return catalog.distro_if_all_found_dbapi(
            self.conn, self.dialect, image=image, flavors=flavors, external_network=external_network
        )

    def session(self) -> Session:
        raise NeedsSession


_INSERT = PreparedWrite(
    insert(cast(Table, m.ClusterTemplate.__table__)), column_keys=templates.INSERT_COLUMNS
)


def insert_template(
    conn: Any,
    dialect: Dialect,
    ctx: RequestContext,
    cmd: CreateTemplate,
    *,
    label_limits: LabelLimits = templates.DEFAULT_LABEL_LIMITS,
    volumes: template_rules.VolumeLimits | None = None,
    coes: CoeRegistry | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """:func:`flotilla.services.templates.create` on ``conn`` (a DBAPI connection of
    ``dialect`` in a write transaction): the new row's columns but ``id``.

    Raises what ``create`` raises (Invalid, Forbidden, Conflict for a taken uuid), or
    :class:`NeedsSession`.
    """
    full = templates.new_row(
        _DbapiRefs(conn, dialect), ctx, cmd, label_limits=label_limits, volumes=volumes, coes=coes,
        provider=provider,
    )  # fmt: skip
    try:
        _INSERT.execute(conn, dialect, full)
    except dialect.loaded_dbapi.IntegrityError:  # the uuid is unique (no lookup first)
        raise Conflict(templates.duplicate_message(full)) from None
    return full
