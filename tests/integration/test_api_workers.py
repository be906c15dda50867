"""``flotilla serve --api-workers N``: several API processes on one port, one database
(an SQLite file, and PostgreSQL).

* Requests on fresh connections are answered by every worker process (the debug header
  ``X-Flotilla-Pid``, on with ``FLOTILLA_DEBUG_SQL_COUNT=1``), and correctly.
* Template creates hammered from several client threads through 3 API processes that
  all write the same database: every one answers 201 (on SQLite never "database is
  locked", nor any 5xx anywhere), and every template is there afterwards.
* A token every worker has cached, still in use, revoked through one worker, is refused
  by every worker once the token cache's lifetime (``token_cache_seconds``) has passed.
* A worker that is killed is replaced; the port keeps answering.

Real ``flotilla serve`` processes (tests/serving.py), stopped by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

import serving

IMAGE = "workers-node"


def _workers(pid: int) -> set[int]:
    """The spawned API worker processes of the server ``pid``."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            out.add(int(entry.name))
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[serving.Launched]:
    """One server per database for the module (starting 3 worker processes is slow on a
    busy machine). On PostgreSQL the database URL is in the data dir's ``flotilla.yaml``,
    so the CLI's ``token-create`` finds it too."""
    env = serving.clean_env(FLOTILLA_DEBUG_SQL_COUNT="1", FLOTILLA_LOG_LEVEL="WARNING")
    data_dir = tmp_path_factory.mktemp("workers") / "data"
    if request.param == "postgresql":
        data_dir.mkdir(mode=0o700)
        url = request.getfixturevalue("pg_module_db")
        (data_dir / "flotilla.yaml").write_text(yaml.safe_dump({"database_url": url}))
    launched = serving.launch(
        data_dir,
        env,
        timeout=180,
        extra_args=["--no-conductor", "--api-workers", "3"],
    )
    try:
        deadline = time.monotonic() + 120
        while len(_workers(launched.proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield launched
    finally:
        launched.stop()
    assert not _workers(launched.proc.pid), "API workers outlived the server"


def _get(url: str, token: str, path: str) -> httpx.Response:
    """One request on a fresh connection (so the kernel may hand it to any worker)."""
    with httpx.Client(base_url=url, timeout=60) as c:
        return c.get(path, headers={"X-Auth-Token": token})


def _token(data_dir: Path, project: str) -> str:
    out = subprocess.run(
        [serving.FLOTILLA, "--data-dir", str(data_dir), "token-create", "--project", project, "--user", project,
         "--role", "member"],
        capture_output=True, text=True, check=True, env=serving.clean_env(),
    )  # fmt: skip
    return out.stdout.strip().splitlines()[0]


def test_every_worker_answers_and_concurrent_writes_never_fail(served: serving.Launched) -> None:
    workers = _workers(served.proc.pid)
    assert len(workers) == 3
    admin = served.token
    r = httpx.post(
        served.url + "/local/v1/images", json={"name": IMAGE, "os_distro": "debian"},
        headers={"X-Auth-Token": admin}, timeout=60,
    )  # fmt: skip
    assert r.status_code == 201, r.text

    seen: Counter[int] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            for r in pool.map(lambda _: _get(served.url, admin, "/v1/clustertemplates"), range(40)):
                assert r.status_code == 200, r.text
                seen[int(r.headers["x-flotilla-pid"])] += 1
            if set(seen) == workers:
                break
    assert set(seen) == workers, f"answered by {dict(seen)}, workers {workers}"

    def create(i: int) -> httpx.Response:
        with httpx.Client(base_url=served.url, timeout=120) as c:
            body = {"name": f"w{i}", "coe": "swarm", "image_id": IMAGE, "labels": {"n": str(i)}}
            return c.post("/v1/clustertemplates", json=body, headers={"X-Auth-Token": admin})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(create, range(240)))
    bad = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 201]
    assert not bad, f"{len(bad)} creates failed, e.g. {bad[:3]}"
    writers = {int(r.headers["x-flotilla-pid"]) for r in answers}
    assert len(writers) >= 2, "the writes did not come from several processes"
    listed = _get(served.url, admin, "/v1/clustertemplates?limit=1000").json()["clustertemplates"]
    assert sorted(t["name"] for t in listed) == sorted(f"w{i}" for i in range(240))


def _until_every_worker(url: str, token: str, workers: set[int]) -> Counter[tuple[int, int]]:
    """Requests with ``token`` on fresh connections until every worker answered one;
    (status, worker pid) of each answer."""
    seen: Counter[tuple[int, int]] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(25):
            for r in pool.map(lambda _: _get(url, token, "/v1/clusters"), range(24)):
                seen[(r.status_code, int(r.headers["x-flotilla-pid"]))] += 1
            if {pid for _, pid in seen} >= workers:
                break
    assert {pid for _, pid in seen} >= workers, f"answered by {seen}, workers {workers}"
    return seen


def test_a_revoked_token_ends_in_every_worker(served: serving.Launched) -> None:
    """Every worker has the token cached (it answered a request with it) and it stays in
    use during the revocation (so the workers keep refreshing their entries ahead); the
    revocation goes through one worker. Once ``token_cache_seconds`` have passed, every
    worker refuses it."""
    workers = _workers(served.proc.pid)
    token = _token(served.data_dir, "prev")
    before = _until_every_worker(served.url, token, workers)
    assert {status for status, _ in before} == {200}, before
    listed = httpx.get(served.url + "/local/v1/tokens", headers={"X-Auth-Token": token}, timeout=60).json()
    (mine,) = listed["tokens"]
    stop = threading.Event()

    def keep_using() -> None:
        while not stop.is_set():
            _get(served.url, token, "/v1/clusters")

    users = [threading.Thread(target=keep_using) for _ in range(3)]
    for t in users:
        t.start()
    try:
        r = httpx.delete(
            f"{served.url}/local/v1/tokens/{mine['id']}", headers={"X-Auth-Token": token}, timeout=60
        )
        assert r.status_code == 204
        # token_cache_seconds (default 2) and a margin: no worker may accept it now.
        time.sleep(2.5)
        after = _until_every_worker(served.url, token, workers)
    finally:
        stop.set()
        for t in users:
            t.join(60)
    assert {status for status, _ in after} == {401}, after


def test_a_killed_worker_is_replaced(served: serving.Launched) -> None:
    before = _workers(served.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _workers(served.proc.pid)
        if len(now) == 3 and victim not in now:
            break
        time.sleep(0.2)
    assert len(now) == 3 and victim not in now
    assert _get(served.url, served.token, "/v1/clusters").status_code == 200


def test_an_operation_queued_by_a_worker_wakes_the_parents_conductor(tmp_path: Path) -> None:
    """The conductor polls only once an hour here: a cluster created through an API worker
    still gets built, because the worker nudges the parent, which wakes its conductor."""
    env = serving.clean_env(
        FLOTILLA_LOG_LEVEL="WARNING", FLOTILLA_ENABLED_PROVIDERS='["fake"]', FLOTILLA_DEFAULT_PROVIDER="fake",
        FLOTILLA_CONDUCTOR__POLL_INTERVAL="3600",
    )  # fmt: skip
    launched = serving.launch(tmp_path / "data", env, timeout=180, extra_args=["--api-workers", "2"])
    try:
        deadline = time.monotonic() + 120
        while len(_workers(launched.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # the conductor's first (empty) claims are done: it now waits its hour
        admin = {"X-Auth-Token": launched.token}
        with httpx.Client(base_url=launched.url, headers=admin, timeout=60) as c:
            assert c.post("/local/v1/images", json={"name": IMAGE, "os_distro": "debian"}).status_code == 201
            t = c.post("/v1/clustertemplates", json={"coe": "swarm", "image_id": IMAGE, "name": "nudge"})
            assert t.status_code == 201, t.text
            r = c.post("/v1/clusters", json={"name": "nudged", "cluster_template_id": t.json()["uuid"]})
            assert r.status_code == 202, r.text
            uuid = r.json()["uuid"]
            status = ""
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                status = c.get(f"/v1/clusters/{uuid}").json()["status"]
                if status != "CREATE_IN_PROGRESS":
                    break
                time.sleep(0.3)
        assert status == "CREATE_COMPLETE"
    finally:
        launched.stop()
    assert not _workers(launched.proc.pid), "API workers outlived the server"
