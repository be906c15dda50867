"""API throughput and latency of a real ``flotilla serve``, driven by ``wrk``.

Starts ``flotilla serve --no-conductor`` (``--api-workers N`` when asked) on a free
loopback port with a throw-away data dir, on SQLite or on a throw-away PostgreSQL
database, loads 1,000 templates (100 of them in their own project) and 100 clusters in
that project, then drives every point for ``--seconds`` from Debian's ``wrk`` (one
client thread; see ``bench/apidrive.py``) at each connection count, with keep-alive and
with ``Connection: close``; before each point it waits until the server is idle again
(requests left queued by the previous point are not counted against the next). Prints per point: requests/s, p50/p99/max latency, errors,
the server's CPU share (of one core; 200 % = both cores of this machine), its CPU time per
request (the number that does not depend on how busy the rest of the machine is) and the
client's, and the load average; then the SQL statements per request kind, read from the
``X-Flotilla-Sql-Statements`` header the server adds only with
``FLOTILLA_DEBUG_SQL_COUNT=1`` (the bench sets it; it is off by default).

Points: ``list100`` (a member's list: 100 rows), ``list1000`` (the admin's list: 1,000
rows), ``show`` (one template), ``create`` (a template), ``clist`` (a member's 100
clusters), ``cshow`` (one cluster).

    .venv/bin/python bench/api.py                       # SQLite, every point
    .venv/bin/python bench/api.py --database postgresql # a throw-away database on the local PostgreSQL
    .venv/bin/python bench/api.py --points show,create --conns 10 --modes keepalive --seconds 8
    .venv/bin/python bench/api.py --api-workers 2

PostgreSQL: ``FLOTILLA_BENCH_PG_URL`` (default
``postgresql+psycopg://flotilla:flotilla@127.0.0.1:5432/postgres``, the role
``scripts/test.sh`` creates, which has CREATEDB) names a server where the bench creates
``flotilla_bench_<pid>`` and drops it at the end. Never asserts anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import apidrive

import serving

IMAGE = "bench-node"
SQL_HEADER = "x-flotilla-sql-statements"
POINTS = ("list100", "list1000", "show", "create", "clist", "cshow")
#: Any well-formed public key will do: nothing logs in to the bench's clusters (no conductor runs).
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAA/t6WaN9k/Dk/oEHxPtz533ZQOEO3cFLHE9eAHg1kQ bench"
PG_DEFAULT = "postgresql+psycopg://flotilla:flotilla@127.0.0.1:5432/postgres"


def template_body(i: int | str, name: str = "bench") -> dict[str, Any]:
    n = i if isinstance(i, int) else 0
    return {
        "name": f"{name}-{i}",
        "coe": "kubernetes" if n % 2 else "swarm",
        "image_id": IMAGE,
        "keypair_id": "benchkey",
        "flavor_id": "m1.small",
        "external_network_id": "public",
        "dns_nameserver": "8.8.8.8",
        "docker_volume_size": 1 + n % 10,
        "labels": {"bench": str(i), "flannel_backend": "vxlan"} if n % 2 else {"bench": str(i)},
        "tags": "bench",
    }


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database on the PostgreSQL of ``FLOTILLA_BENCH_PG_URL``; dropped afterwards."""
    import psycopg

    admin = os.environ.get("FLOTILLA_BENCH_PG_URL", PG_DEFAULT)
    plain = admin.replace("postgresql+psycopg://", "postgresql://")
    name = f"flotilla_bench_{os.getpid()}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        # Not WITH (FORCE): that needs rights over autovacuum workers the bench role lacks;
        # a plain DROP stops them itself, and the server was stopped before this runs.
        for attempt in range(40):
            with psycopg.connect(plain, autocommit=True) as conn:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 39:
                        raise
            time.sleep(0.25)


def make_token(data_dir: Path, db_url: str | None, project: str, role: str) -> str:
    cmd = [serving.FLOTILLA, "--data-dir", str(data_dir), "token-create", "--project", project]
    cmd += ["--user", f"{project}-user", "--role", role, *(["--database-url", db_url] if db_url else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=serving.clean_env())
    return out.stdout.strip().splitlines()[0]


def register_catalog(client: httpx.Client, member: str) -> None:
    """The node image (with the client's admin token) and the member's ``benchkey`` keypair
    the loaded templates and clusters name; warns (never stops) when either is refused."""
    r = client.post("/local/v1/images", json={"name": IMAGE, "os_distro": "debian", "replace": True})
    if r.status_code != 201:
        print(f"warning: image registration answered {r.status_code}: {r.text[:300]}")
    r = client.post(
        "/local/v1/keypairs", json={"name": "benchkey", "public_key": PUBLIC_KEY}, headers={"X-Auth-Token": member}
    )  # fmt: skip
    if r.status_code != 201:
        print(f"warning: keypair registration answered {r.status_code}: {r.text[:300]}")


def load(client: httpx.Client, token: str, path: str, bodies: list[dict[str, Any]]) -> list[str]:
    """POST every body (4 at a time); the uuids in the order of ``bodies``."""

    def one(body: dict[str, Any]) -> str:
        r = client.post(path, json=body, headers={"X-Auth-Token": token})
        if r.status_code not in (201, 202):
            raise SystemExit(f"loading {path} answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["uuid"])

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, bodies))


def sql_counts(client: httpx.Client, points: dict[str, apidrive.Point]) -> dict[str, tuple[str, str]]:
    """Statements of each kind: (first request with a token, the next one)."""
    out = {}
    for name, p in points.items():
        seen = []
        for k in range(2):
            body = p.body.replace("@N@", f"sql{k}") if p.body else None
            r = client.request(
                p.method, p.paths[0], content=body, headers={"X-Auth-Token": p.token, "Content-Type": "application/json"}
            )  # fmt: skip
            seen.append(
                r.headers.get(SQL_HEADER, "?") if r.status_code == p.expect else f"HTTP {r.status_code}"
            )
        out[name] = (seen[0], seen[1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--seconds", type=float, default=5.0, help="per point (default 5)")
    p.add_argument("--conns", default="1,10,50", help="connection counts (default 1,10,50)")
    p.add_argument("--modes", default="keepalive,close", help="keepalive and/or close")
    p.add_argument("--points", default=",".join(POINTS), help=f"subset of {','.join(POINTS)}")
    p.add_argument("--api-workers", type=int, default=None, help="pass --api-workers N to flotilla serve")
    p.add_argument("--python-client", action="store_true", help="use the Python client even if wrk exists")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    conns = [int(c) for c in args.conns.split(",")]
    modes = args.modes.split(",")
    wanted = args.points.split(",")
    use_wrk = apidrive.WRK is not None and not args.python_client
    print("bench command:", shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv))
    if not use_wrk:
        why = "--python-client" if args.python_client else "wrk is not installed (apt-get install wrk)"
        print(f"CLIENT: the Python fallback ({why}); it shares the server's CPU, so numbers are lower")
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp, _database(args.database) as db_url:
        data_dir = Path(tmp)
        extra = ["--no-conductor", *(["--database-url", db_url] if db_url else [])]
        if args.api_workers:
            extra += ["--api-workers", str(args.api_workers)]
        env = serving.clean_env(
            FLOTILLA_LOG_LEVEL="WARNING", FLOTILLA_DEBUG_SQL_COUNT="1", FLOTILLA_MAX_CLUSTERS_PER_PROJECT="100000"
        )  # fmt: skip
        if os.environ.get("FLOTILLA_KUBE_CACHE"):  # a stand-in while the real binaries are built
            env["FLOTILLA_KUBE_CACHE"] = os.environ["FLOTILLA_KUBE_CACHE"]
        launched = serving.launch(data_dir, env, timeout=120, extra_args=extra)
        try:
            print("server command:", shlex.join([serving.FLOTILLA, "--data-dir", tmp, "serve", *extra]))
            print(f"database: {db_url.split('@')[-1] if db_url else 'SQLite in ' + tmp}")
            run(args, launched, db_url, conns, modes, wanted, use_wrk)
        finally:
            launched.stop()
    return 0


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
    else:
        with pg_database() as url:
            yield url


def settle(pid: int, limit: float = 60.0) -> None:
    """Wait until the server is idle (under 10 % of a core for half a second): requests a
    previous point left queued in the server must not eat into the next point."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cpu0 = apidrive.process_cpu_seconds(pid)
        time.sleep(0.5)
        if apidrive.process_cpu_seconds(pid) - cpu0 < 0.05:
            return
    print(f"(the server was still busy after {limit:.0f} s)")


def run(
    args: argparse.Namespace,
    launched: serving.Launched,
    db_url: str | None,
    conns: list[int],
    modes: list[str],
    wanted: list[str],
    use_wrk: bool,
) -> None:
    admin = launched.token
    member = make_token(launched.data_dir, db_url, "p100", "member")
    writer = make_token(launched.data_dir, db_url, "pcreate", "member")
    headers = {"OpenStack-API-Version": "container-infra latest", "X-Auth-Token": admin}
    with httpx.Client(base_url=launched.url, headers=headers, timeout=60) as c:
        register_catalog(c, member)
        t0 = time.perf_counter()
        load(c, admin, "/v1/clustertemplates", [template_body(i) for i in range(900)])
        mine = load(c, member, "/v1/clustertemplates", [template_body(i, "p100") for i in range(100)])
        clusters = load(
            c, member, "/v1/clusters",
            [{"name": f"c{i}", "cluster_template_id": mine[0], "node_count": 1, "master_count": 1} for i in range(100)],
        )  # fmt: skip
        print(f"loaded 1000 templates and 100 clusters in {time.perf_counter() - t0:.1f} s")
        create_body = json.dumps(template_body("@N@", "load"))
        all_points = {
            "list100": apidrive.Point("list100", "GET", ("/v1/clustertemplates",), member, 200),
            "list1000": apidrive.Point("list1000", "GET", ("/v1/clustertemplates?limit=1000",), admin, 200),
            "show": apidrive.Point(
                "show", "GET", tuple(f"/v1/clustertemplates/{u}" for u in mine[:50]), member, 200
            ),
            "create": apidrive.Point("create", "POST", ("/v1/clustertemplates",), writer, 201, create_body),
            "clist": apidrive.Point("clist", "GET", ("/v1/clusters",), member, 200),
            "cshow": apidrive.Point(
                "cshow", "GET", tuple(f"/v1/clusters/{u}" for u in clusters[:50]), member, 200
            ),
        }
        points = {k: v for k, v in all_points.items() if k in wanted}
        sizes = {
            "list100": len(
                c.get("/v1/clustertemplates", headers={"X-Auth-Token": member}).json()["clustertemplates"]
            )
        }
        sizes["list1000"] = len(c.get("/v1/clustertemplates?limit=1000").json()["clustertemplates"])
        sizes["clist"] = len(c.get("/v1/clusters", headers={"X-Auth-Token": member}).json()["clusters"])
        print(f"rows per list: {sizes}")
        counts = sql_counts(c, points)

    drive = apidrive.run_wrk if use_wrk else apidrive.run_python
    results: list[dict[str, Any]] = []
    print()
    print(f"{'point':<9}{'mode':<10}{'conns':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'errors':>8}{'srv CPU':>9}{'ms CPU/req':>11}{'cli CPU':>9}  load avg")  # fmt: skip
    for name, point in points.items():
        for mode in modes:
            for n in conns:
                settle(launched.proc.pid)
                cpu0, t0 = apidrive.process_cpu_seconds(launched.proc.pid), time.perf_counter()
                out = drive(launched.url, point, connections=n, seconds=args.seconds, close=mode == "close")
                wall = time.perf_counter() - t0
                used = apidrive.process_cpu_seconds(launched.proc.pid) - cpu0
                srv = used / wall
                per_req = used * 1000 / out.requests if out.requests else float("nan")
                load1 = os.getloadavg()[0]
                kinds = f" {out.detail}" if out.detail else ""
                print(
                    f"{name:<9}{mode:<10}{n:>5}{out.rate:>9.1f}{out.p50_ms:>9.2f}{out.p99_ms:>9.1f}{out.max_ms:>9.1f}"
                    f"{out.errors:>8}{srv:>9.0%}{per_req:>11.2f}{out.client_cpu_s / wall:>9.0%}  {load1:6.2f}{kinds}"
                )  # fmt: skip
                results.append({
                    "point": name, "mode": mode, "conns": n, "rps": round(out.rate, 1), "p50_ms": out.p50_ms,
                    "p99_ms": out.p99_ms, "max_ms": out.max_ms, "errors": out.errors, "error_kinds": out.detail,
                    "server_cpu": round(srv, 3), "cpu_ms_per_req": per_req, "load1": load1,
                })  # fmt: skip
    print()
    print("SQL statements per request (first request of a token / later ones; BEGIN/COMMIT not counted):")
    for name, (first, later) in counts.items():
        print(f"  {name:<9}{first:>6} / {later}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "sql": counts, "rows": sizes}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
