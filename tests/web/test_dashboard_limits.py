"""The dashboard's scale form enforces the operator's node limit like the API does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Dashboard, make_cluster, make_template

from flotilla.settings import ConductorSettings, Settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", max_nodes_per_cluster=3,
        conductor=ConductorSettings(enabled=False),
    )  # fmt: skip


def test_scale_form_checks_the_cluster_size(
    dashboard: Callable[[str], Dashboard], image: dict[str, Any]
) -> None:
    dash = dashboard("p1_member")
    cluster = make_cluster(dash, make_template(dash))
    scale = dash.post(f"/dashboard/clusters/{cluster}/scale", {"node_count": "10"})
    assert scale.status_code == 400 and "at most 3 nodes" in scale.text
