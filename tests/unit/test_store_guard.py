"""The store guard (flotilla.db.guard) and the check it shares with the API edge (flotilla.safetext).

Whatever path a value takes (a service called by the dashboard, a conductor, a route
that forgot the edge check), a string that could not be served back as UTF-8 JSON never
reaches a commit: the flush raises Invalid (400) and the transaction rolls back, so no
later list, show or notification can fail on it. Real SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from flotilla.context import SYSTEM
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.outbox import OutboxNotification
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Invalid
from flotilla.services import bootstrap, clusters, templates
from flotilla.services.clusters import Limits
from flotilla.services.commands import CreateCluster, CreateTemplate, TemplateFields
from flotilla.settings import Settings


@pytest.fixture
def db(settings: Settings) -> Any:
    database = Database(settings)
    bootstrap.prepare_database(database)
    yield database
    database.dispose()


def _image(db: Database) -> None:
    with db.session() as s:
        s.add(m.Image(uuid="00000000-0000-4000-8000-000000000001", name="img", os_distro="debian"))


def _template(values: dict[str, Any]) -> CreateTemplate:
    return CreateTemplate("clustertemplate", TemplateFields.of(values))


def _count(db: Database, model: Any) -> int:
    with db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("bad", ["\udfff", "a\ud800b", "nul\x00"])
def test_a_service_write_of_an_unservable_string_is_refused(db: Database, bad: str) -> None:
    _image(db)
    values = {"coe": "swarm", "image_id": "img", "name": "t", "labels": {"x": bad}}
    with pytest.raises(Invalid, match="which no field accepts"), db.session() as s:
        templates.create(s, SYSTEM, CreateTemplate("clustertemplate", TemplateFields.of(values)))
    assert _count(db, m.ClusterTemplate) == 0


def test_the_whole_transaction_rolls_back(db: Database) -> None:
    """A good template, then a cluster whose labels are bad, in one transaction: neither, and
    no notification, is committed."""
    _image(db)
    with pytest.raises(Invalid), db.session() as s:
        templates.create(s, SYSTEM, _template({"coe": "swarm", "image_id": "img", "name": "t"}))
        clusters.create(
            s, SYSTEM, CreateCluster("cluster", "t", name="c", labels={"k": "\udfff"}),
            coes=CoeRegistry.from_names(["docker", "swarm_mode"]), limits=Limits(max_clusters_per_project=5, max_limit=10),
            default_provider="fake",
        )  # fmt: skip
    assert (_count(db, m.ClusterTemplate), _count(db, m.Cluster), _count(db, OutboxNotification)) == (0, 0, 0)


def test_an_update_is_checked_too(db: Database) -> None:
    _image(db)
    with db.session() as s:
        templates.create(s, SYSTEM, _template({"coe": "swarm", "image_id": "img", "name": "t"}))
    with (
        pytest.raises(Invalid, match="The value of name contains a lone UTF-16 surrogate"),
        db.session() as s,
    ):
        row = s.scalars(select(m.ClusterTemplate)).one()
        row.name = "t\udc80"
    with db.reader() as s:
        assert s.scalars(select(m.ClusterTemplate.name)).one() == "t"


def test_good_text_passes(db: Database) -> None:
    _image(db)
    with db.session() as s:
        labels = {"emoji": "\U0001f600", "cafe": "café", "cjk": "日本"}
        templates.create(
            s, SYSTEM, _template({"coe": "swarm", "image_id": "img", "name": "t", "labels": labels})
        )
    with db.reader() as s:
        assert s.scalars(select(m.ClusterTemplate)).one().labels == labels


# ---- safetext, the shared check ----------------------------------------------------------------


def test_find_problem_is_iterative_and_bounded() -> None:
    from flotilla import safetext

    deep: Any = []
    for _ in range(100_000):  # far beyond the recursion limit
        deep = [deep]
    problem = safetext.find_problem(deep)
    assert problem is not None and problem.what == "JSON nested deeper than 32 levels"
    shallow: Any = {"a": [[{"b": "c"}]]}
    assert safetext.find_problem(shallow) is None


def test_find_problem_names_the_place() -> None:
    from flotilla import safetext

    problem = safetext.find_problem({"labels": {"ok": "v", "x": ["a", "\udfff"]}})
    assert problem is not None and problem.where == "labels.x[1]"
    problem = safetext.find_problem({"labels": {"\ud800": "v"}})
    assert problem is not None and problem.where == "labels" and problem.what.startswith("a key with")
