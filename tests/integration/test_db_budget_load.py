"""``database_connections`` on a real PostgreSQL: the real ``flotilla serve --api-workers 3``
(with its conductor, on the fake provider) under concurrent load never holds more
connections than its budget, and no request fails; a configuration that cannot fit stops
at start with one clear line and no traceback.

The load mixes every kind of connection user: shows and lists (read threads), template
creates (one-statement writes), a fresh token per client thread now and then (token
lookups), cluster creates, quota and stats reads (routes in AnyIO's thread pool: write
transactions and ``db.reader()``), and the conductor building the clusters. Meanwhile a
sampler counts the server's connections in ``pg_stat_activity`` (the test database is
this module's alone) every 20 ms. For a few seconds in the middle the test holds an
``ACCESS EXCLUSIVE`` lock on ``cluster_templates``: every request that reads or writes
templates waits in the database, holding its connection, so each process opens all the
connections its threads can hold at once (before the budget, 3 API processes held more
than 30 here: their pools allowed 40 each, and AnyIO's 40 route threads fed them).

Real processes (tests/serving.py), stopped by pid.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import serving
from flotilla.db import budget
from flotilla.settings import Settings

BUDGET = 30
WORKERS = 3
CLIENTS = 48
SECONDS = 12.0
IMAGE = "budget-node"


def _settings(url: str) -> dict[str, object]:
    return {
        "database_url": url, "database_connections": BUDGET, "enabled_providers": ["fake"],
        "default_provider": "fake",
    }  # fmt: skip


@pytest.fixture(scope="module")
def served(pg_module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[serving.Launched]:
    data_dir = tmp_path_factory.mktemp("budget") / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "flotilla.yaml").write_text(yaml.safe_dump(_settings(pg_module_db)))
    env = serving.clean_env(FLOTILLA_LOG_LEVEL="INFO")
    launched = serving.launch(data_dir, env, timeout=180, extra_args=["--api-workers", str(WORKERS)])
    try:
        yield launched
    finally:
        launched.stop()


def _token(data_dir: Path, project: str, role: str = "member") -> str:
    out = subprocess.run(
        [serving.FLOTILLA, "--data-dir", str(data_dir), "token-create", "--project", project, "--user", project,
         "--role", role],
        capture_output=True, text=True, check=True, env=serving.clean_env(),
    )  # fmt: skip
    return out.stdout.strip().splitlines()[0]


#: The sampler, in a process of its own (the client threads here would starve a thread of the GIL):
#: counts until its stdin closes, then prints the most seen at once and how many samples.
SAMPLER = """
import select, sys
from sqlalchemy import create_engine, make_url, text
url = sys.argv[1]
engine = create_engine(url)
most = samples = 0
with engine.connect() as conn:
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        now = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                                "AND pid <> pg_backend_pid() AND application_name <> 'budget-test'"),
                           {"d": make_url(url).database}).scalar_one()
        most, samples = max(most, int(now)), samples + 1
print(most, samples)
"""


class Sampler:
    """The most connections to ``url``'s database seen at once (the sampler's own excluded)."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SAMPLER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.most = self.samples = 0

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *_: object) -> None:
        out, _ = self.proc.communicate("", timeout=30)
        most, samples = out.split()
        self.most, self.samples = int(most), int(samples)


def test_connections_stay_within_the_budget_under_load(served: serving.Launched, pg_module_db: str) -> None:
    plan = budget.serve(Settings(**_settings(pg_module_db), api_workers=WORKERS))  # type: ignore[arg-type]
    assert plan.connections <= BUDGET and plan.workers == WORKERS
    admin = {"X-Auth-Token": served.token}
    with httpx.Client(base_url=served.url, headers=admin, timeout=60) as c:
        assert c.post("/local/v1/images", json={"name": IMAGE, "os_distro": "debian"}).status_code == 201
        t = c.post("/v1/clustertemplates", json={"coe": "swarm", "image_id": IMAGE, "name": "base"})
        assert t.status_code == 201, t.text
    template = t.json()["uuid"]
    # Tokens made beforehand (the CLI's own connection is not the server's), one set per client.
    tokens = [_token(served.data_dir, f"p{i % 4}") for i in range(12)]

    failures: list[str] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def client(n: int) -> None:
        i = 0
        with httpx.Client(base_url=served.url, timeout=120) as c:
            while time.monotonic() < deadline:
                i += 1
                token = tokens[(n + i) % len(tokens)] if i % 5 == 0 else served.token
                h = {"X-Auth-Token": token}
                kind = (n + i) % 7
                if kind == 0:
                    r = c.post("/v1/clustertemplates", headers=h,
                               json={"name": f"c{n}-{i}", "coe": "swarm", "image_id": IMAGE})  # fmt: skip
                    want = 201
                elif kind == 1 and i < 7 and n % 4 == 0:  # 12 clusters, for the conductor
                    r = c.post("/v1/clusters", headers=admin,
                               json={"name": f"k{n}-{i}", "cluster_template_id": template})  # fmt: skip
                    want = 202
                elif kind == 1:
                    r, want = c.get("/v1/clustertemplates?limit=20", headers=h), 200
                elif kind == 2:
                    r, want = c.get("/v1/quotas", headers=admin), 200
                elif kind == 3:
                    r, want = c.get("/v1/stats", headers=admin), 200
                elif kind == 4:
                    r, want = c.get("/v1/clusters", headers=h), 200
                else:
                    r, want = c.get(f"/v1/clustertemplates/{template}", headers=admin), 200
                with lock:
                    counts[r.request.url.path.split("/")[2]] = (
                        counts.get(r.request.url.path.split("/")[2], 0) + 1
                    )
                    if r.status_code != want:
                        failures.append(
                            f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}"
                        )

    locker = create_engine(pg_module_db, poolclass=NullPool, connect_args={"application_name": "budget-test"})
    with Sampler(pg_module_db) as sampler, ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, n) for n in range(CLIENTS)]
        time.sleep(SECONDS / 4)
        with locker.begin() as conn:  # every template read and write waits meanwhile
            conn.execute(text("LOCK TABLE cluster_templates IN ACCESS EXCLUSIVE MODE"))
            time.sleep(SECONDS / 3)
        locker.dispose()
        for f in running:
            f.result()
        # The conductor builds what was asked meanwhile (its workers, leases, health, heartbeat).
        with httpx.Client(base_url=served.url, headers=admin, timeout=60) as c:
            wait_until = time.monotonic() + 60
            while time.monotonic() < wait_until:
                listed = c.get("/v1/clusters").json()["clusters"]
                if all(x["status"] != "CREATE_IN_PROGRESS" for x in listed):
                    break
                time.sleep(0.3)
    assert not failures, f"{len(failures)} requests failed, e.g. {failures[:5]}"
    assert sum(counts.values()) > 200 and sampler.samples > 100, (counts, sampler.samples)
    assert {x["status"] for x in listed} <= {"CREATE_COMPLETE"} and listed, listed
    assert 0 < sampler.most <= BUDGET, f"{sampler.most} connections at once, budget {BUDGET}"
    print(f"at most {sampler.most} connections at once ({sampler.samples} samples), plan {plan.connections}, "
          f"budget {BUDGET}; requests {counts}")  # fmt: skip
    log = served.log.read_text()
    assert f"PostgreSQL connections: at most {plan.connections} (database_connections={BUDGET})" in log


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        (["serve", "--api-workers", "14"], {},
         "database_connections=80 is too small for api_workers=14: each of the 14 API processes needs 5"),
        (["serve", "--api-workers", "13"], {"FLOTILLA_DATABASE_CONNECTIONS": "100000"},
         "more than the server allows: max_connections="),
        (["conductor"], {"FLOTILLA_DATABASE_CONNECTIONS": "5"},
         "database_connections=5 is too small for a conductor with 2 workers: it needs 14"),
    ],
)  # fmt: skip
def test_a_configuration_that_cannot_fit_stops_at_start(
    pg_module_db: str, tmp_path: Path, command: list[str], env: dict[str, str], expected: str
) -> None:
    data_dir = tmp_path / "data"
    args = [serving.FLOTILLA, "--data-dir", str(data_dir), *command]
    if command[0] == "serve":
        args += ["--bind", f"127.0.0.1:{serving.free_port()}"]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=120,
        env=serving.clean_env(FLOTILLA_DATABASE_URL=pg_module_db, FLOTILLA_ENABLED_PROVIDERS='["fake"]',
                              FLOTILLA_DEFAULT_PROVIDER="fake", **env),
    )  # fmt: skip
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (data_dir / "clouds.yaml").exists()  # nothing prepared
