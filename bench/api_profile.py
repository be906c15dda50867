"""CPU cost per request of the API app itself, in process, without HTTP: for profiling.

Builds the app with ``create_app`` on a throw-away SQLite data dir (``--database-url``
for another database), loads 1,000 templates (100 in a member's project) and 100
clusters, then calls the ASGI app directly, one request at a time, for each kind and
prints the process CPU time per request (all threads; the number that does not depend
on how busy the machine is) and the SQL statements it ran. No sockets and no HTTP
parser: what this measures is the app (middleware, auth, routing, database, JSON).

Profile a kind with py-spy (``pip install py-spy``; samples every thread):

    .venv/bin/python bench/api_profile.py                   # CPU us/request per kind
    .venv/bin/py-spy record -r 500 -o show.svg -- .venv/bin/python bench/api_profile.py --kinds show --seconds 20

Never asserts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import PUBLIC_KEY, template_body
from flotilla.api.app import create_app
from flotilla.services import bootstrap, tokens
from flotilla.settings import load_settings

Headers = list[tuple[bytes, bytes]]


async def call(
    app: Any, method: str, path: str, token: str, body: Any = None
) -> tuple[int, bytes, dict[str, str]]:
    raw = json.dumps(body).encode() if body is not None else b""
    path, _, query = path.partition("?")
    headers: Headers = [
        (b"host", b"bench"), (b"x-auth-token", token.encode()),
        (b"openstack-api-version", b"container-infra latest"),
    ]  # fmt: skip
    if raw:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "root_path": "",
    }  # fmt: skip
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status, out, hdrs = 0, bytearray(), {}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            hdrs.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(out), hdrs


async def call_json(app: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    status, out, _ = await call(app, method, path, token, body)
    if status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {status} {out[:300]!r}")
    return json.loads(out)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flotilla-profile-") as tmp:
        settings = load_settings(data_dir=tmp, database_url=args.database_url, log_level="WARNING")
        settings.debug_sql_count = True
        settings.max_clusters_per_project = 100000
        app = create_app(settings)
        db = app.state.runtime.db
        bootstrap.prepare_database(db)
        with db.session() as s:
            admin = tokens.create(s, user_id="admin", project_id="admin", roles=["admin"])
            member = tokens.create(s, user_id="m", project_id="p100", roles=["member"])
            writer = tokens.create(s, user_id="w", project_id="pcreate", roles=["member"])
        await call_json(app, "POST", "/local/v1/images", admin, {"name": "bench-node", "os_distro": "debian"})
        await call_json(
            app, "POST", "/local/v1/keypairs", member, {"name": "benchkey", "public_key": PUBLIC_KEY}
        )
        for i in range(900):
            await call_json(app, "POST", "/v1/clustertemplates", admin, template_body(i))
        mine = [
            (await call_json(app, "POST", "/v1/clustertemplates", member, template_body(i, "p100")))["uuid"]
            for i in range(100)
        ]
        body = {"cluster_template_id": mine[0], "node_count": 1, "master_count": 1}
        clusters = [
            (await call_json(app, "POST", "/v1/clusters", member, {**body, "name": f"c{i}"}))["uuid"]
            for i in range(100)
        ]
        n = 0

        def create() -> tuple[str, str, str, Any]:
            return ("POST", "/v1/clustertemplates", writer, template_body(f"load-{n}", "load"))

        kinds = {
            "list100": lambda: ("GET", "/v1/clustertemplates", member, None),
            "list1000": lambda: ("GET", "/v1/clustertemplates?limit=1000", admin, None),
            "show": lambda: ("GET", f"/v1/clustertemplates/{mine[n % 50]}", member, None),
            "create": create,
            "clist": lambda: ("GET", "/v1/clusters", member, None),
            "cshow": lambda: ("GET", f"/v1/clusters/{clusters[n % 50]}", member, None),
        }
        print(f"{'kind':<9}{'requests':>9}{'CPU us/req':>12}{'wall us/req':>12}{'SQL':>5}")
        for name in args.kinds.split(","):
            make = kinds[name]
            count, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
            stop = wall0 + args.seconds
            sql = "?"
            while time.perf_counter() < stop:
                n += 1
                status, _, hdrs = await call(app, *make())
                if status >= 300:
                    raise SystemExit(f"{name}: HTTP {status}")
                sql = hdrs.get("x-flotilla-sql-statements", "?")
                count += 1
            cpu = (time.process_time() - cpu0) / count * 1e6
            wall = (time.perf_counter() - wall0) / count * 1e6
            print(f"{name:<9}{count:>9}{cpu:>12.0f}{wall:>12.0f}{sql:>5}")
        db.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default="list100,list1000,show,create,clist,cshow")
    p.add_argument("--seconds", type=float, default=3.0, help="per kind (default 3)")
    p.add_argument("--database-url")
    asyncio.run(main_async(p.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
