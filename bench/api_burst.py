"""Many concurrent clients against the API app in process (no HTTP): the tail, and token lookups.

Builds the app with ``create_app`` on a throw-away SQLite data dir, loads 100 templates
in a member's project, then runs ``--conns`` client loops at once on one event loop for
``--seconds``, each sending the member's show (or list of 100) again and again, and
prints req/s, p50/p99/max latency, the process CPU per request and the token lookups
(SQL statements beyond one per request, from ``debug_sql_count``; background refreshes
of the token cache are not counted). The token cache (2 s) runs out during the run:
this is what showed issue 13's burst of token lookups. Runs on any machine, but the
latencies are only as good as the machine is idle; never asserts anything.

    .venv/bin/python bench/api_burst.py --kind show --conns 50 --seconds 5
    .venv/bin/python bench/api_burst.py --kind list --conns 50 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_profile import call, call_json

from flotilla.api.app import create_app
from flotilla.services import tokens
from flotilla.settings import load_settings


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flotilla-burst-") as tmp:
        settings = load_settings(data_dir=tmp, log_level="WARNING")
        settings.debug_sql_count = True
        app = create_app(settings)
        db = app.state.runtime.db
        with db.session() as s:
            admin = tokens.create(s, user_id="admin", project_id="admin", roles=["admin"])
            member = tokens.create(s, user_id="m", project_id="p1", roles=["member"])
        await call_json(app, "POST", "/local/v1/images", admin, {"name": "n", "os_distro": "debian"})
        body = {"coe": "swarm", "image_id": "n"}
        uuids = [
            (await call_json(app, "POST", "/v1/clustertemplates", member, {**body, "name": f"t{i}"}))["uuid"]
            for i in range(100)
        ]
        latencies: list[float] = []
        statements = 0
        stop = time.perf_counter() + args.seconds

        async def client(i: int) -> None:
            nonlocal statements
            n = 0
            while time.perf_counter() < stop:
                path = (
                    f"/v1/clustertemplates/{uuids[(i + n) % 100]}"
                    if args.kind == "show"
                    else "/v1/clustertemplates"
                )
                t0 = time.perf_counter()
                status, _, headers = await call(app, "GET", path, member)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise SystemExit(f"{path}: HTTP {status}")
                statements += int(headers["x-flotilla-sql-statements"])
                n += 1

        cpu0 = time.process_time()
        await asyncio.gather(*(client(i) for i in range(args.conns)))
        cpu = time.process_time() - cpu0
        latencies.sort()
        count = len(latencies)
        print(
            f"{args.kind} conns={args.conns} requests={count} req/s={count / args.seconds:.0f} "
            f"p50={latencies[count // 2] * 1e3:.1f}ms p99={latencies[int(count * 0.99)] * 1e3:.1f}ms "
            f"max={latencies[-1] * 1e3:.1f}ms CPU-us/req={cpu / count * 1e6:.0f} "
            f"token-lookups={statements - count}"
        )
        db.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["show", "list"], default="show")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main_async(p.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
