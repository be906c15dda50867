"""``/v1/mservices`` rows keyed by (host, binary), as in Magnum (issue 14, item 8), on both databases.

* A restarted conductor (a new process) reuses its row and keeps it ``up``; it used to
  add a row per process (``host:pid``) and leave the old one ``down``, which is what
  tempest's test_magnum_service_list trips over.
* Migration 0004 folds the old per-process rows into one row per host and binary.
* ``flotilla serve`` that cannot bind its port registers no row (and exits 1).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, select
from sqlalchemy.pool import NullPool

import serving
from flotilla.db import migrate
from flotilla.db import models as m

Auth = Callable[..., dict[str, str]]
FLOTILLA = str(Path(sys.executable).with_name("flotilla"))


def _rows(app: FastAPI) -> list[tuple[str, str, int]]:
    with app.state.runtime.db.reader() as s:
        return [
            (r.host, r.binary, r.report_count) for r in s.scalars(select(m.Service).order_by(m.Service.id))
        ]


def _run_conductor(data_dir: Path, db_url: str, app: FastAPI, min_reports: int) -> None:
    """``flotilla conductor`` in its own process until its row has ``min_reports``, then SIGTERM."""
    env = serving.clean_env(
        FLOTILLA_CONDUCTOR__HEARTBEAT_INTERVAL="0.1",
        FLOTILLA_ENABLED_PROVIDERS='["fake"]',
        FLOTILLA_DEFAULT_PROVIDER="fake",
    )
    log = data_dir / f"conductor-{min_reports}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [FLOTILLA, "conductor", "--data-dir", str(data_dir), "--database-url", db_url],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(count >= min_reports for _, _, count in _rows(app)):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_a_restarted_conductor_reuses_its_row(
    api: TestClient, app: FastAPI, auth: Auth, tmp_path: Path, db_url: str
) -> None:
    _run_conductor(tmp_path, db_url, app, min_reports=1)
    first = _rows(app)
    assert first == [(socket.gethostname(), "magnum-conductor", first[0][2])]
    _run_conductor(tmp_path, db_url, app, min_reports=first[0][2] + 3)
    second = _rows(app)
    assert len(second) == 1 and second[0][:2] == first[0][:2] and second[0][2] > first[0][2]
    listed = api.get("/v1/mservices", headers=auth("admin")).json()["mservices"]
    assert [(s["host"], s["binary"], s["state"]) for s in listed] == [
        (socket.gethostname(), "magnum-conductor", "up")
    ]


def test_migration_0004_folds_per_process_rows(app: FastAPI, db_url: str) -> None:
    engine = create_engine(db_url, poolclass=NullPool)
    cfg = migrate.alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        now = datetime.now(UTC)
        rows = [
            ("node-a:100", "magnum-conductor", now - timedelta(minutes=5)),
            ("node-a:200", "magnum-conductor", now),  # the newest of node-a: kept
            ("node-a:300", "magnum-conductor", None),
            ("node-b", "magnum-conductor", now),
            ("node-c:7", "magnum-conductor", now - timedelta(hours=1)),
            ("node-c:7", "magnum-api", now),
        ]
        with engine.begin() as conn:
            for host, binary, seen in rows:
                conn.execute(
                    insert(m.Service).values(
                        host=host,
                        binary=binary,
                        report_count=1,
                        disabled=False,
                        last_seen_up=seen,
                        created_at=now,
                    )
                )
            kept_a = conn.scalar(select(m.Service.id).where(m.Service.host == "node-a:200"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            after = sorted(
                conn.execute(select(m.Service.id, m.Service.host, m.Service.binary)).all(),
                key=lambda r: r[1:],
            )
        assert [(h, b) for _, h, b in after] == [
            ("node-a", "magnum-conductor"), ("node-b", "magnum-conductor"), ("node-c", "magnum-api"),
            ("node-c", "magnum-conductor"),
        ]  # fmt: skip
        assert after[0][0] == kept_a
    finally:
        engine.dispose()


def test_serve_that_cannot_bind_registers_nothing(app: FastAPI, tmp_path: Path, db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = serving.clean_env(
            FLOTILLA_CONDUCTOR__HEARTBEAT_INTERVAL="0.1",
            FLOTILLA_ENABLED_PROVIDERS='["fake"]',
            FLOTILLA_DEFAULT_PROVIDER="fake",
        )
        proc = subprocess.run(
            [FLOTILLA, "serve", "--data-dir", str(tmp_path / "d"), "--database-url", db_url,
             "--bind", f"127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert _rows(app) == []
    assert not (tmp_path / "d" / "clouds.yaml").exists()  # it stopped before doing anything


def test_service_host_is_a_setting(tmp_path: Path) -> None:
    from flotilla.conductor.service import Conductor
    from flotilla.db.engine import Database
    from flotilla.settings import ConductorSettings, Settings

    settings = Settings(data_dir=tmp_path, conductor=ConductorSettings(host="conductor-1", enabled=False))
    db = Database(settings)
    try:
        conductor = Conductor(settings, db)  # not started
        assert conductor.service_host == "conductor-1"
        assert conductor.host.startswith(socket.gethostname() + ":")  # the lease owner stays per process
    finally:
        db.dispose()
