"""API throughput and latency of a real ``flotilla serve``: template list, show and create.

Starts ``flotilla serve --no-conductor`` on a free loopback port with a throw-away data
dir (SQLite there, or ``--database-url``), loads N templates, then drives each operation
from C client threads (one keep-alive connection each) for K requests or S seconds,
whichever ends first, and prints requests/s and p50/p99 latency. Never asserts: failed
requests are counted and shown.

    .venv/bin/python bench/api.py
    .venv/bin/python bench/api.py --templates 500 --concurrency 16 --requests 4000
    .venv/bin/python bench/api.py --database-url postgresql+psycopg://flotilla:flotilla@127.0.0.1/flotilla_bench

With ``--database-url`` the templates the bench made are deleted at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import serving

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "bench-node"


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def pct(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds (nan when nothing succeeded)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


@contextmanager
def server(data_dir: Path, database_url: str | None) -> Iterator[tuple[str, str, list[str]]]:
    """A running ``flotilla serve``; yields (endpoint, admin token, command). Stopped by pid."""
    extra = ["--no-conductor", *(["--database-url", database_url] if database_url else [])]
    env = {**os.environ, "FLOTILLA_LOG_LEVEL": "WARNING"}
    try:
        launched = serving.launch(data_dir, env, timeout=120, extra_args=extra)
    except serving.ServeFailed as exc:
        raise SystemExit(str(exc)) from exc
    try:
        yield launched.url, launched.token, [serving.FLOTILLA, "--data-dir", str(data_dir), "serve", *extra]
    finally:
        launched.stop()


def template_body(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "coe": "kubernetes" if i % 2 else "swarm",
        "image_id": IMAGE,
        "keypair_id": "benchkey",
        "flavor_id": "m1.small",
        "external_network_id": "public",
        "dns_nameserver": "8.8.8.8",
        "docker_volume_size": 1 + i % 10,
        "labels": {"bench": str(i), "flannel_backend": "vxlan"} if i % 2 else {"bench": str(i)},
        "tags": "bench",
    }


def drive(
    name: str,
    client_factory: Callable[[], httpx.Client],
    request: Callable[[httpx.Client, int], httpx.Response],
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    expect: int,
) -> Result:
    """Run ``request`` from ``concurrency`` threads until ``requests`` are done or ``seconds`` pass."""
    result = Result(name)
    counter = itertools.count()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        with client_factory() as client:
            while time.monotonic() < stop_at:
                n = next(counter)
                if n >= requests:
                    return
                t0 = time.perf_counter()
                try:
                    r = request(client, n)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                dt = time.perf_counter() - t0
                with lock:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == expect:
                        result.latencies.append(dt)
                    else:
                        result.errors += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--templates", type=int, default=200, help="templates loaded before measuring (default 200)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--requests", type=int, default=1000, help="requests per operation (default 1000)")
    p.add_argument("--seconds", type=float, default=30.0, help="time cap per operation (default 30)")
    p.add_argument("--database-url", help="run the server on this database instead of a temp SQLite file")
    p.add_argument(
        "--list-limit", type=int, default=None, help="?limit= for the list operation (default: none)"
    )
    args = p.parse_args(argv)

    print("bench command:", shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv))
    with (
        tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp,
        server(Path(tmp), args.database_url) as (
            endpoint,
            token,
            cmd,
        ),
    ):
        print("server command:", shlex.join(cmd))
        print(f"database: {args.database_url.split('@')[-1] if args.database_url else 'SQLite in ' + tmp}")
        headers = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}

        def client() -> httpx.Client:
            return httpx.Client(base_url=endpoint, headers=headers, timeout=60)

        with client() as c:
            r = c.post("/local/v1/images", json={"name": IMAGE, "os_distro": "debian", "replace": True})
            if r.status_code != 201:
                print(f"warning: image registration answered {r.status_code}: {r.text}")

        made: list[str] = []
        made_lock = threading.Lock()

        def load(c: httpx.Client, n: int) -> httpx.Response:
            r = c.post("/v1/clustertemplates", json=template_body(n))
            if r.status_code == 201:
                with made_lock:
                    made.append(r.json()["uuid"])
            return r

        t0 = time.perf_counter()
        loaded = drive(
            "load",
            client,
            load,
            concurrency=args.concurrency,
            requests=args.templates,
            seconds=3600,
            expect=201,
        )
        print(f"loaded {len(made)} templates in {time.perf_counter() - t0:.1f} s ({loaded.errors} failed)")
        ids = list(made) or ["missing"]
        list_path = "/v1/clustertemplates" + (f"?limit={args.list_limit}" if args.list_limit else "")
        base_count = args.templates

        ops: list[tuple[str, Callable[[httpx.Client, int], httpx.Response], int]] = [
            ("list", lambda c, n: c.get(list_path), 200),
            ("show", lambda c, n: c.get(f"/v1/clustertemplates/{random.choice(ids)}"), 200),
            ("create", lambda c, n: load(c, base_count + n), 201),
        ]
        results = [
            drive(
                name, client, fn, concurrency=args.concurrency, requests=args.requests, seconds=args.seconds,
                expect=expect,
            )
            for name, fn, expect in ops
        ]  # fmt: skip

        print()
        print(
            f"templates={args.templates} concurrency={args.concurrency} requests<={args.requests} seconds<={args.seconds:g}"
        )
        print(f"{'op':<8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for res in results:
            done = len(res.latencies) + res.errors
            rate = done / res.elapsed if res.elapsed else 0.0
            print(
                f"{res.name:<8}{done:>10}{res.errors:>8}{rate:>10.1f}{res.pct(0.50):>10.1f}{res.pct(0.99):>10.1f}"
            )
            bad = {k: v for k, v in res.statuses.items() if k not in (200, 201)}
            if bad:
                print(f"{'':<8}unexpected statuses: {bad}")

        if args.database_url and made:
            with client() as c:
                gone = sum(c.delete(f"/v1/clustertemplates/{u}").status_code == 204 for u in made)
            print(f"\ndeleted the {gone} templates the bench made from {args.database_url.split('@')[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
