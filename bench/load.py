"""Mixed API load, and a burst of cluster creates shared by several conductors.

Runs real ``flotilla`` processes on a throw-away data dir, with the in-memory ``fake``
provider (clusters are rows and certificates; nothing runs), and prints numbers. It
never asserts.

Mixed load (default): ``--clients`` threads, one keep-alive httpx connection each, for
``--seconds``; every request is drawn at random: list/show templates, list/show
clusters (about 70 %), template create/delete and cluster create/delete (about 30 %).
Prints requests/s and p50/p99 latency per operation type, error counts by status, and
how the clusters created during the run ended.

    .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --clients 16 --seconds 60 --conductors 2

Burst: one ``flotilla serve --no-conductor`` API process plus ``--conductors`` (default
2) ``flotilla conductor`` processes on one PostgreSQL database; ``N`` clusters are
created at once (N threads released together), then the bench waits until all are
terminal and prints how many completed, how long it took, how many create operations
each conductor finished and how often each was claimed.

    .venv/bin/python bench/load.py --burst 100

Which conductor finished an operation: ``operations.lease_owner`` is
``HOST:PID/wN`` of the worker holding the lease, and finishing an operation clears only
``lease_until`` (``services.operations.finish``), so the owner of the final claim stays
in the row; the PID maps it to a conductor process. As a cross-check the bench also
counts the ``<kind> operation finished`` lines in each conductor's log.
``operations.attempts`` counts claims: 1 means exactly one worker ever ran it.

PostgreSQL: ``--database-url`` is used as is (nothing is dropped). Without it, and
whenever it is needed (``--burst``, ``--conductors`` > 0), the local cluster is used
the way ``scripts/test.sh`` does it (``pg_lsclusters``; started with ``pg_ctlcluster``
if it is down, and stopped again at the end), with a fresh ``flotilla_load`` database
owned by the role ``flotilla`` (password ``flotilla``). Needs root for that. Without a
URL and without conductors the single ``flotilla serve`` uses SQLite in the data dir.

Every process the bench starts is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from flotilla.db.models import Operation

IMAGE = "load-node"
BASE_TEMPLATE = "load-base"
PG_ROLE = "flotilla"
PG_PASSWORD = "flotilla"
PG_DB = "flotilla_load"
TERMINAL_WAIT = 120.0


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def flotilla_bin() -> list[str]:
    exe = Path(sys.executable).with_name("flotilla")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "flotilla.cli.main"]


def base_env(database_url: str | None) -> dict[str, str]:
    """The environment of every process: the fake provider only, no quota in the way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_", "DOCKER_"))}
    env.update(
        FLOTILLA_ENABLED_PROVIDERS='["fake"]',
        FLOTILLA_DEFAULT_PROVIDER="fake",
        FLOTILLA_MAX_CLUSTERS_PER_PROJECT="1000000",
        FLOTILLA_LOG_LEVEL="INFO",
    )
    if database_url:
        env["FLOTILLA_DATABASE_URL"] = database_url
    return env


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Procs:
    """The processes this bench started; ``stop_all`` ends them by pid, newest first."""

    items: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> Proc:
        with log.open("ab") as fh:
            popen = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        proc = Proc(name, cmd, log, popen)
        self.items.append(proc)
        print(f"started {name} (pid {proc.pid}): {shlex.join(cmd)}", flush=True)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            if proc.popen.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in reversed(self.items):
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait()
        self.items.clear()


def wait_api(proc: Proc, endpoint: str, data_dir: Path, timeout: float = 180) -> str:
    """Wait until the API answers; returns the admin token from ``clouds.yaml``."""
    deadline = time.monotonic() + timeout
    clouds = data_dir / "clouds.yaml"
    while True:
        if proc.popen.poll() is not None:
            raise SystemExit(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log.read_text()[-3000:]}"
            )
        try:
            if clouds.is_file() and httpx.get(endpoint + "/", timeout=2).status_code == 200:
                token: str = yaml.safe_load(clouds.read_text())["clouds"]["flotilla"]["auth"]["token"]
                return token
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{proc.name} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def wait_conductors(client: httpx.Client, procs: list[Proc], timeout: float = 180) -> None:
    """Wait until every conductor process has sent a heartbeat (so all compete from the start)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise SystemExit(f"{proc.name} exited:\n{proc.log.read_text()[-3000:]}")
        hosts = [s["host"] for s in client.get("/v1/mservices").json().get("mservices", [])]
        if all(any(h.endswith(f":{p.pid}") for h in hosts) for p in procs):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"conductors did not report within {timeout:.0f} s (seen: {hosts})")
        time.sleep(0.3)


# ----------------------------------------------------------------------------- PostgreSQL


def _pg_admin(port: str, sql: str) -> str:
    r = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", port,
         "-d", "postgres", "-tAc", sql],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return r.stdout.strip()


@contextmanager
def local_postgres() -> Iterator[str]:
    """The local PostgreSQL cluster (started if down, stopped again after), with a fresh
    ``flotilla_load`` database owned by ``flotilla``. Yields its SQLAlchemy URL."""
    if os.geteuid() != 0:
        raise SystemExit("starting the local PostgreSQL needs root; or pass --database-url")
    lines = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
    if not lines.strip():
        raise SystemExit("no local PostgreSQL cluster (pg_lsclusters lists none); run scripts/test.sh once")
    ver, name, port, status = lines.splitlines()[0].split()[:4]
    started = not status.startswith("online")
    if started:
        print(f"starting PostgreSQL {ver}/{name} on port {port}", flush=True)
        subprocess.run(["pg_ctlcluster", ver, name, "start"], check=True)
    try:
        for _ in range(120):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]).returncode == 0:
                break
            time.sleep(0.5)
        if _pg_admin(port, f"SELECT 1 FROM pg_roles WHERE rolname = '{PG_ROLE}'") != "1":
            _pg_admin(port, f"CREATE ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'")
        _pg_admin(port, f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        _pg_admin(port, f'CREATE DATABASE "{PG_DB}" OWNER {PG_ROLE}')
        yield f"postgresql+psycopg://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DB}"
    finally:
        if started:
            print(f"stopping PostgreSQL {ver}/{name} (this bench started it)", flush=True)
            subprocess.run(["pg_ctlcluster", ver, name, "stop"], check=False)


# ----------------------------------------------------------------------------- deployment


@dataclass
class Deployment:
    endpoint: str
    token: str
    data_dir: Path
    database_url: str | None
    api: Proc
    conductors: list[Proc]

    def client(self) -> httpx.Client:
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": "container-infra latest"}
        return httpx.Client(base_url=self.endpoint, headers=headers, timeout=120)


@contextmanager
def deploy(database_url: str | None, conductors: int) -> Iterator[Deployment]:
    """``flotilla serve`` (with its own conductor when ``conductors`` is 0), else
    ``serve --no-conductor`` plus that many ``flotilla conductor`` processes sharing the
    data dir (so they share ``secret.key``)."""
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="flotilla-load-") as tmp:
        data_dir = Path(tmp)
        env = base_env(database_url)
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            cmd = [*flotilla_bin(), "--data-dir", tmp, "serve", "--bind", f"127.0.0.1:{port}"]
            if conductors:
                cmd.append("--no-conductor")
            api = procs.start("api", cmd, {**env, "FLOTILLA_LOG_LEVEL": "WARNING"}, data_dir / "api.log")
            token = wait_api(api, endpoint, data_dir)  # first: it migrates and writes secret.key
            workers = [
                procs.start(f"conductor-{i + 1}", [*flotilla_bin(), "--data-dir", tmp, "conductor"], env,
                            data_dir / f"conductor-{i + 1}.log")
                for i in range(conductors)
            ]  # fmt: skip
            dep = Deployment(endpoint, token, data_dir, database_url, api, workers)
            if workers:
                with dep.client() as c:
                    wait_conductors(c, workers)
            yield dep
        finally:
            procs.stop_all()


def prepare(dep: Deployment, templates: int) -> list[str]:
    """Register the image and the base template; load ``templates`` more. Returns their uuids."""
    with dep.client() as c:
        r = c.post("/local/v1/images", json={"name": IMAGE, "os_distro": "debian", "replace": True})
        if r.status_code != 201:
            raise SystemExit(f"image registration answered {r.status_code}: {r.text}")
        uuids = []
        for i in range(templates + 1):
            name = BASE_TEMPLATE if i == 0 else f"load-t{i}"
            r = c.post("/v1/clustertemplates", json=template_body(name))
            if r.status_code != 201:
                raise SystemExit(f"template create answered {r.status_code}: {r.text}")
            uuids.append(r.json()["uuid"])
        return uuids


def template_body(name: str) -> dict[str, Any]:
    return {
        "name": name, "coe": "swarm", "image_id": IMAGE, "flavor_id": "m1.small",
        "external_network_id": "public", "docker_storage_driver": "overlay2", "labels": {"bench": "load"},
    }  # fmt: skip


def cluster_body(name: str) -> dict[str, Any]:
    return {"name": name, "cluster_template_id": BASE_TEMPLATE, "master_count": 1, "node_count": 1}


def statuses(c: httpx.Client, uuids: set[str]) -> dict[str, str]:
    """Status of each of ``uuids`` (``GONE`` once deleted)."""
    r = c.get("/v1/clusters", params={"limit": 1000})
    r.raise_for_status()
    seen = {row["uuid"]: row["status"] for row in r.json()["clusters"] if row["uuid"] in uuids}
    while r.json().get("next"):
        r = c.get(r.json()["next"].split("/v1", 1)[1])
        seen.update({row["uuid"]: row["status"] for row in r.json()["clusters"] if row["uuid"] in uuids})
    return {u: seen.get(u, "GONE") for u in uuids}


def wait_terminal(c: httpx.Client, uuids: set[str], timeout: float) -> tuple[dict[str, str], float]:
    """Poll every 0.25 s until no cluster of ``uuids`` is in progress (or ``timeout``)."""
    started = time.monotonic()
    while True:
        now = statuses(c, uuids)
        if not any(s.endswith("IN_PROGRESS") for s in now.values()) or time.monotonic() - started > timeout:
            return now, time.monotonic() - started
        time.sleep(0.25)


# ----------------------------------------------------------------------------- mixed load


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: dict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    created: list[str] = field(default_factory=list)

    def merge(self, other: Stats) -> None:
        for op, values in other.latencies.items():
            self.latencies[op].extend(values)
        for op, counts in other.errors.items():
            self.errors[op].update(counts)
        self.created.extend(other.created)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


#: (operation kind, weight); the write kinds create or delete depending on the client's stock.
MIX: list[tuple[str, int]] = [
    ("template list", 15), ("template show", 20), ("cluster list", 15), ("cluster show", 20),
    ("template write", 15), ("cluster write", 15),
]  # fmt: skip


def client_loop(
    dep: Deployment, index: int, stop_at: float, templates: list[str], shown: list[str], seed: int
) -> Stats:
    rng = random.Random(seed * 1000 + index)
    stats = Stats()
    own_templates: collections.deque[str] = collections.deque()
    own_clusters: collections.deque[str] = collections.deque()
    kinds, weights = zip(*MIX, strict=True)
    serial = 0
    with dep.client() as c:
        while time.monotonic() < stop_at:
            kind = rng.choices(kinds, weights)[0]
            serial += 1
            body: dict[str, Any] | None = None
            if kind == "template list":
                op, expect, method, path = kind, 200, "GET", "/v1/clustertemplates"
            elif kind == "template show":
                op, expect, method, path = kind, 200, "GET", f"/v1/clustertemplates/{rng.choice(templates)}"
            elif kind == "cluster list":
                op, expect, method, path = kind, 200, "GET", "/v1/clusters"
            elif kind == "cluster show":
                op, expect, method, path = kind, 200, "GET", f"/v1/clusters/{rng.choice(shown)}"
            elif kind == "template write" and len(own_templates) < 2:
                op, expect, method, path = "template create", 201, "POST", "/v1/clustertemplates"
                body = template_body(f"c{index}-t{serial}")
            elif kind == "template write":
                op, expect, method = "template delete", 204, "DELETE"
                path = f"/v1/clustertemplates/{own_templates.popleft()}"
            elif len(own_clusters) < 2:
                op, expect, method, path = "cluster create", 202, "POST", "/v1/clusters"
                body = cluster_body(f"c{index}-k{serial}")
            else:
                op, expect, method = "cluster delete", 204, "DELETE"
                path = f"/v1/clusters/{own_clusters.popleft()}"
            t0 = time.perf_counter()
            try:
                r = c.request(method, path, json=body)
                status = r.status_code
            except httpx.HTTPError:
                r, status = None, 0
            elapsed = time.perf_counter() - t0
            if status != expect:
                stats.errors[op][status] += 1
                continue
            stats.latencies[op].append(elapsed)
            if r is not None and op == "template create":
                own_templates.append(r.json()["uuid"])
            elif r is not None and op == "cluster create":
                own_clusters.append(r.json()["uuid"])
                stats.created.append(r.json()["uuid"])
    return stats


def mixed(dep: Deployment, clients: int, seconds: float, templates: int, seed: int) -> None:
    ids = prepare(dep, templates)
    with dep.client() as c:  # clusters that stay, for "cluster show"
        shown = [c.post("/v1/clusters", json=cluster_body(f"show-{i}")).json()["uuid"] for i in range(5)]
        wait_terminal(c, set(shown), TERMINAL_WAIT)
    results: list[Stats] = [Stats() for _ in range(clients)]
    stop_at = time.monotonic() + seconds

    def run(i: int) -> None:
        results[i] = client_loop(dep, i, stop_at, ids, shown, seed)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total = Stats()
    for s in results:
        total.merge(s)

    print(f"\n{clients} clients for {elapsed:.1f} s, {templates + 1} templates and 5 clusters preloaded")
    print(f"{'operation':<17}{'ok':>8}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  errors by status")
    ops = sorted(set(total.latencies) | set(total.errors))
    all_ok = all_err = 0
    for op in ops:
        ok = len(total.latencies.get(op, []))
        err = sum(total.errors.get(op, {}).values())
        all_ok, all_err = all_ok + ok, all_err + err
        lat = total.latencies.get(op, [])
        bad = dict(total.errors[op]) if err else ""
        print(
            f"{op:<17}{ok:>8}{err:>8}{(ok + err) / elapsed:>9.1f}{pct(lat, 0.5):>9.1f}{pct(lat, 0.99):>9.1f}  {bad}"
        )
    merged = [v for values in total.latencies.values() for v in values]
    print(
        f"{'all':<17}{all_ok:>8}{all_err:>8}{(all_ok + all_err) / elapsed:>9.1f}"
        f"{pct(merged, 0.5):>9.1f}{pct(merged, 0.99):>9.1f}"
    )
    with dep.client() as c:
        final, waited = wait_terminal(c, set(total.created), TERMINAL_WAIT)
    outcome = collections.Counter(final.values())
    print(
        f"\nclusters created during the run: {len(total.created)}; {waited:.1f} s after the run: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items()))
        + " (GONE = deleted by the load)"
    )


# ----------------------------------------------------------------------------- burst


def burst(dep: Deployment, count: int) -> None:
    prepare(dep, 0)
    barrier = threading.Barrier(count + 1)
    answers: list[tuple[int, str, float]] = [(0, "", 0.0)] * count

    def create(i: int) -> None:
        with dep.client() as c:
            barrier.wait()
            t0 = time.perf_counter()
            try:
                r = c.post("/v1/clusters", json=cluster_body(f"burst-{i}"))
                answers[i] = (
                    r.status_code,
                    r.json().get("uuid", "") if r.status_code == 202 else r.text,
                    0.0,
                )
            except httpx.HTTPError as exc:
                answers[i] = (0, str(exc), 0.0)
            answers[i] = (answers[i][0], answers[i][1], time.perf_counter() - t0)

    threads = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    posted = time.monotonic() - started
    uuids = {u for status, u, _ in answers if status == 202}
    refused = collections.Counter(status for status, _, _ in answers if status != 202)
    with dep.client() as c:
        final, _ = wait_terminal(c, uuids, 300)
    took = time.monotonic() - started
    outcome = collections.Counter(final.values())
    latencies = [secs for status, _, secs in answers if status == 202]

    print(f"\nburst of {count} creates, {len(dep.conductors)} conductor processes (2 workers each)")
    print(
        f"accepted {len(uuids)} (202) in {posted:.2f} s, POST p50 {pct(latencies, 0.5):.0f} ms, "
        f"p99 {pct(latencies, 0.99):.0f} ms" + (f"; refused: {dict(refused)}" if refused else "")
    )
    print(
        f"all terminal {took:.2f} s after the first POST: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items()))
    )
    if dep.database_url:
        report_operations(dep, uuids)


def report_operations(dep: Deployment, uuids: set[str]) -> None:
    """Per conductor: create operations finished (final lease owner) and claims per operation."""
    assert dep.database_url is not None
    engine = create_engine(dep.database_url)
    try:
        with Session(engine) as s:
            ops = list(
                s.scalars(
                    select(Operation).where(Operation.cluster_id.in_(uuids), Operation.kind == "create")
                )
            )
    finally:
        engine.dispose()
    names = {str(p.pid): p.name for p in dep.conductors}

    def conductor_of(owner: str | None) -> str:
        pid = (owner or "").split("/", 1)[0].rpartition(":")[2]
        return f"{names.get(pid, 'unknown')} (pid {pid or '?'})"

    by_conductor = collections.Counter(conductor_of(op.lease_owner) for op in ops if op.state == "done")
    by_worker = collections.Counter(op.lease_owner for op in ops if op.state == "done")
    attempts = collections.Counter(op.attempts for op in ops)
    states = collections.Counter(op.state for op in ops)
    print(
        f"\ncreate operations in the database: {len(ops)} ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})"
    )
    print("finished per conductor (operations.lease_owner of the final claim):")
    for name, n in sorted(by_conductor.items()):
        print(f"  {name}: {n}")
    print(
        "  per worker: "
        + ", ".join(f"{w} {n}" for w, n in sorted(by_worker.items(), key=lambda x: str(x[0])))
    )
    print(
        "claims per create operation (operations.attempts): "
        + ", ".join(f"{k} claim(s): {v}" for k, v in sorted(attempts.items()))
        + f"; claimed exactly once: {attempts.get(1, 0)} of {len(ops)}"
    )
    queued = [(op.started_at - op.created_at).total_seconds() for op in ops if op.started_at]
    ran = [(op.finished_at - op.started_at).total_seconds() for op in ops if op.finished_at and op.started_at]
    print(
        f"create operations: queued p50 {pct(queued, 0.5) / 1000:.2f} s, p99 {pct(queued, 0.99) / 1000:.2f} s; "
        f"ran p50 {pct(ran, 0.5) / 1000:.2f} s, p99 {pct(ran, 0.99) / 1000:.2f} s (claim to finish)"
    )
    pattern = re.compile(r"cluster (\S+): create operation finished")
    print("cross-check, 'create operation finished' lines in each conductor's log:")
    for proc in dep.conductors:
        found = sum(1 for m in pattern.finditer(proc.log.read_text(errors="replace")) if m.group(1) in uuids)
        print(f"  {proc.name} (pid {proc.pid}): {found}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8, help="client threads of the mixed load (default 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of the mixed load (default 30)")
    p.add_argument("--templates", type=int, default=20, help="templates preloaded for the reads (default 20)")
    p.add_argument("--database-url", help="PostgreSQL URL to use as is (default: see above)")
    p.add_argument(
        "--conductors", type=int, default=None,
        help="separate `flotilla conductor` processes (default: 0, the one in `serve`; 2 with --burst)",
    )  # fmt: skip
    p.add_argument(
        "--burst", type=int, metavar="N", help="create N clusters at once instead of the mixed load"
    )
    p.add_argument("--seed", type=int, default=20261122)
    args = p.parse_args(argv)
    conductors = args.conductors if args.conductors is not None else (2 if args.burst else 0)
    print("command:", shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv))
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    with ExitStack() as stack:
        url = args.database_url
        if url is None and (args.burst or conductors):
            url = stack.enter_context(local_postgres())
        print(f"database: {url.split('@')[-1] if url else 'SQLite in the data dir'}", flush=True)
        dep = stack.enter_context(deploy(url, conductors))
        if args.burst:
            burst(dep, args.burst)
        else:
            mixed(dep, args.clients, args.seconds, args.templates, args.seed)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
