"""Helpers for the dashboard tests: a signed-in browser stand-in and the conductor's bookkeeping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.services import certificates, operations

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Dashboard:
    """A browser stand-in: its own cookie jar, signed in as one identity."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def login(self, token: str) -> httpx.Response:
        return self.client.post(
            "/dashboard/login",
            data={"csrf": self.csrf("/dashboard/login"), "token": token, "next": "/dashboard/clusters"},
            follow_redirects=False,
        )

    def csrf(self, path: str = "/dashboard/clusters") -> str:
        found = CSRF_RE.search(self.client.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None
    ) -> httpx.Response:
        """POST a form with this session's CSRF token (or ``csrf``), without following redirects."""
        body = dict(data or {})
        body["csrf"] = self.csrf() if csrf is None else csrf
        return self.client.post(path, data=body, follow_redirects=False)


@dataclass
class Conductor:
    """Does what the conductor records for an operation, through the same service calls."""

    app: FastAPI

    def _claim(self) -> m.Operation:
        with self.app.state.runtime.db.session() as s:
            op = operations.claim(s, "test-conductor", 60, skip_locked=False)
            assert op is not None, "no operation to claim"
            return op

    def progress(
        self,
        cluster_uuid: str,
        step: int = 1,
        total: int = 1,
        name: str = "doing it",
        detail: str | None = None,
    ) -> m.Operation:
        """Claim the operation and record its step as the runner does (data, not text)."""
        op = self._claim()
        with self.app.state.runtime.db.session() as s:
            operations.record_progress(s, op.id, cluster_uuid, operations.Progress(step, total, name, detail))
        return op

    def finish(
        self, op: m.Operation, *, failed: str | None = None, api_address: str | None = None, name: str = "c"
    ) -> None:
        rt = self.app.state.runtime
        with rt.db.session() as s:
            if op.kind == "create" and not failed:
                certificates.ensure_ca(s, rt.box, op.cluster_id, name)
                s.execute(
                    update(m.Cluster)
                    .where(m.Cluster.uuid == op.cluster_id)
                    .values(
                        api_address=api_address,
                        master_addresses=["172.29.0.10"],
                        node_addresses=["172.29.0.10"],
                    )
                )
            operations.finish(s, op, "test-conductor", failed_reason=failed)

    def run(self, cluster_uuid: str, **kw: Any) -> None:
        """Claim the next operation, show a step, and finish it."""
        op = self.progress(cluster_uuid)
        self.finish(op, **kw)


TEMPLATE_FORM = {
    "name": "tpl-one", "coe": "docker", "image_id": "flotilla-node", "flavor_id": "m1.small",
    "master_flavor_id": "m1.small", "docker_volume_size": "5", "docker_storage_driver": "overlay2",
    "external_network_id": "public", "dns_nameserver": "8.8.8.8", "server_type": "vm",
    "labels": "foo=bar", "http_proxy": "", "https_proxy": "", "no_proxy": "",
}  # fmt: skip


def location(response: Any) -> str:
    assert response.status_code == 303, response.text[:2000]
    where: str = response.headers["location"]
    return where


def make_template(dash: Dashboard, **over: str) -> str:
    return location(dash.post("/dashboard/templates/new", {**TEMPLATE_FORM, **over})).rsplit("/", 1)[1]


def make_cluster(dash: Dashboard, template: str, **over: str) -> str:
    form = {"cluster_template_id": template, "name": "web1", "master_count": "1", "node_count": "1",
            "create_timeout": "60", **over}  # fmt: skip
    where = location(dash.post("/dashboard/clusters/new", form))
    return where.split("/dashboard/clusters/")[1].split("?")[0]


def ctx_for(who: str) -> RequestContext:
    user, project, role = {"p1_member": ("alice", "p1", "member"), "admin": ("admin", "admin", "admin")}[who]
    return RequestContext(user_id=user, project_id=project, roles=frozenset({role, "member", "reader"}))
