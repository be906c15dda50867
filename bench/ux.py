"""What a user feels: dashboard pages and CLI list commands against a real ``flotilla serve``.

Starts ``flotilla serve`` from ``--repo``'s ``.venv/bin/flotilla`` (default: this checkout)
on a free loopback port with a throw-away data dir (SQLite), with the in-memory ``fake``
provider and its conductor, and loads what ``bench/api.py`` loads: 900 templates in the
admin's project, 100 in a member's project ``p100`` and 100 clusters there (swarm, fake
nodes). The conductor runs every create to ``CREATE_COMPLETE`` (so clusters have their
nodegroups, events and operations, as a user's do); then the server is restarted with
``--no-conductor`` on the same data dir, so the periodic jobs do not land in the timings.

Then it times, one request or command at a time (nothing concurrent: this is the latency
of one person clicking or typing):

* the dashboard, signed in the way a browser does (``GET /dashboard/login`` for the CSRF
  seed, ``POST /dashboard/login`` with the token; the session cookie from then on): the
  sign-in itself, the cluster list, a cluster's page and its ``status.json`` (what the
  page polls), the create-cluster form, the template list, a template's page, the
  create-template form, as the member; the template list and the create-cluster form as
  the admin (who sees all 1,000 templates); and the admin's services page. Per page:
  median and p90 of ``--repeat`` requests (after 2 unmeasured ones) and the server's CPU
  time per request (utime + stime from ``/proc``, over the whole block);
* CLI list commands, each a fresh process as a user runs it: ``flotilla`` (the checkout's
  own, with ``--os-token``/``--os-endpoint-override``), the legacy ``magnum`` shell
  (python-magnumclient 2.17, token mode) and ``openstack coe`` (admin_token), when their
  venvs exist (``--compat-dir``: the checkout holding ``.venv-magnum217`` and ``.venv-osc``
  from ``scripts/setup-compat.sh``; absent ones are skipped with a note). Median, p90 and
  min wall time of ``--cli-repeat`` runs (after one unmeasured run), the server's CPU per
  command and the command's own CPU time (utime + stime of the finished child: on a busy
  machine the steadier number; a command is mostly Python starting and importing).

    .venv/bin/python bench/ux.py
    .venv/bin/python bench/ux.py --repo ../ux-before --compat-dir /work/main --json before.json
    .venv/bin/python bench/ux.py --skip-cli --repeat 100

Never asserts anything; every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import apidrive

import serving
from api import load, register_catalog, template_body

HERE = Path(__file__).resolve().parent.parent
MEMBER_PROJECT = "p100"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
SERVER_ENV = {
    "FLOTILLA_ENABLED_PROVIDERS": '["fake"]',
    "FLOTILLA_DEFAULT_PROVIDER": "fake",
    "FLOTILLA_MAX_CLUSTERS_PER_PROJECT": "100000",
    "FLOTILLA_LOG_LEVEL": "WARNING",
}


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    flotilla: Path
    data_dir: Path
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin_token(self) -> str:
        clouds = yaml.safe_load((self.data_dir / "clouds.yaml").read_text())
        return str(clouds["clouds"]["flotilla"]["auth"]["token"])

    def cpu(self) -> float:
        return apidrive.process_cpu_seconds(self.proc.pid)


def start(flotilla: Path, data_dir: Path, *, conductor: bool, timeout: float = 120) -> Server:
    """``flotilla --data-dir DATA_DIR serve`` on a free port; returns once it answers."""
    port = serving.free_port()
    cmd = [str(flotilla), "--data-dir", str(data_dir), "serve", "--bind", f"127.0.0.1:{port}"]
    cmd += [] if conductor else ["--no-conductor"]
    log = data_dir / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=serving.clean_env(**SERVER_ENV), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )  # fmt: skip
    server = Server(flotilla, data_dir, proc, port)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            up = (data_dir / "clouds.yaml").is_file() and httpx.get(
                server.url + "/", timeout=2
            ).status_code == 200
            if up:
                print(f"server (pid {proc.pid}): {shlex.join(cmd)}", flush=True)
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    serving.stop(proc)
    tail = log.read_text(errors="replace")[-3000:]
    raise SystemExit(f"flotilla serve did not come up (exit {proc.returncode}):\n{tail}")


@contextmanager
def running(flotilla: Path, data_dir: Path, *, conductor: bool) -> Iterator[Server]:
    server = start(flotilla, data_dir, conductor=conductor)
    try:
        yield server
    finally:
        serving.stop(server.proc)


def member_token(flotilla: Path, data_dir: Path) -> str:
    cmd = [str(flotilla), "--data-dir", str(data_dir), "token-create", "--project", MEMBER_PROJECT]
    cmd += ["--user", f"{MEMBER_PROJECT}-user", "--role", "member"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=serving.clean_env(**SERVER_ENV))
    return out.stdout.strip().splitlines()[0].strip()


@dataclass
class Data:
    admin: str
    member: str
    templates: list[str]  # the member's
    clusters: list[str]  # the member's


def populate(server: Server, member: str, timeout: float = 600) -> Data:
    """900 admin templates, 100 member templates, 100 member clusters run to CREATE_COMPLETE."""
    admin = server.admin_token()
    headers = {"OpenStack-API-Version": "container-infra latest", "X-Auth-Token": admin}
    t0 = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as c:
        register_catalog(c, member)
        load(c, admin, "/v1/clustertemplates", [template_body(i) for i in range(900)])
        mine = load(c, member, "/v1/clustertemplates", [template_body(i, MEMBER_PROJECT) for i in range(100)])
        swarm = mine[0::2][:5]  # even ones are swarm: the fake provider runs them to the end
        bodies = [
            {"name": f"c{i}", "cluster_template_id": swarm[i % len(swarm)], "node_count": 1 + i % 3,
             "master_count": 1}
            for i in range(100)
        ]  # fmt: skip
        clusters = load(c, member, "/v1/clusters", bodies)
        deadline = time.monotonic() + timeout
        while True:
            r = c.get("/v1/clusters", params={"limit": 1000}, headers={"X-Auth-Token": member})
            rows = r.json()["clusters"]
            states: dict[str, int] = {}
            for row in rows:
                states[row["status"]] = states.get(row["status"], 0) + 1
            if not any(s.endswith("IN_PROGRESS") for s in states) or time.monotonic() > deadline:
                break
            time.sleep(1)
    print(f"loaded 1000 templates and 100 clusters in {time.perf_counter() - t0:.1f} s; clusters: {states}")
    return Data(admin, member, mine, clusters)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Row:
    name: str
    n: int
    median_ms: float
    p90_ms: float
    min_ms: float
    cpu_ms: float
    client_cpu_ms: float = float("nan")
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        keys = ("name", "n", "median_ms", "p90_ms", "min_ms", "cpu_ms", "client_cpu_ms", "note")
        return {k: getattr(self, k) for k in keys}


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (values in seconds, result in milliseconds)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def children_cpu() -> float:
    """utime + stime of this process's finished children (the CLI commands), in seconds."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(
    name: str, server: Server, repeat: int, warmup: int, once: Callable[[], str], *, children: bool = False
) -> Row:
    """Run ``once`` (which returns "" or a problem) ``warmup`` + ``repeat`` times; with
    ``children`` also the CPU time of the processes it ran."""
    nan = float("nan")
    for _ in range(warmup):
        problem = once()
        if problem:
            return Row(name, 0, nan, nan, nan, nan, note=problem)
    walls: list[float] = []
    cpu0, kids0 = server.cpu(), children_cpu()
    for _ in range(repeat):
        t0 = time.perf_counter()
        problem = once()
        walls.append(time.perf_counter() - t0)
        if problem:
            return Row(name, len(walls), nan, nan, nan, nan, note=problem)
    cpu = (server.cpu() - cpu0) * 1000 / repeat
    kids = (children_cpu() - kids0) * 1000 / repeat if children else nan
    return Row(name, repeat, statistics.median(walls) * 1000, pct(walls, 0.9), min(walls) * 1000, cpu, kids)


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n{title} (load average {load_avg()})")
    print(f"{'':<52}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}{'srv CPU ms':>12}{'cli CPU ms':>12}")
    for r in rows:
        kids = "-" if math.isnan(r.client_cpu_ms) else f"{r.client_cpu_ms:.0f}"
        print(
            f"{r.name:<52}{r.n:>4}{r.median_ms:>11.1f}{r.p90_ms:>9.1f}{r.min_ms:>9.1f}{r.cpu_ms:>12.1f}"
            f"{kids:>12}  {r.note}"
        )


# ----------------------------------------------------------------------------- dashboard


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign ``client`` in as a browser does; "" or what went wrong."""
    r = client.get("/dashboard/login")
    found = CSRF_FIELD.search(r.text)
    if r.status_code != 200 or not found:
        return f"GET /dashboard/login answered {r.status_code} without a csrf field"
    form = {"token": token, "next": "/dashboard/clusters", "csrf": found.group(1)}
    r = client.post("/dashboard/login", data=form)
    if r.status_code not in (302, 303) or "flotilla_session" not in client.cookies:
        return f"POST /dashboard/login answered {r.status_code}"
    return ""


def dashboard(server: Server, data: Data, repeat: int) -> list[Row]:
    rows: list[Row] = []

    # One client, its cookies cleared before each sign-in (a browser that has none yet):
    # building an httpx client costs the client some 50 ms (its TLS context), which is
    # not the server's and no browser pays per sign-in.
    with httpx.Client(base_url=server.url, timeout=60) as fresh:

        def fresh_sign_in() -> str:
            fresh.cookies.clear()
            return sign_in(fresh, data.member)

        rows.append(timed("sign in (GET + POST /dashboard/login)", server, repeat, 2, fresh_sign_in))
    cluster, template = data.clusters[len(data.clusters) // 2], data.templates[len(data.templates) // 2]
    member_pages = [
        ("cluster list", "/dashboard/clusters"),
        ("cluster detail", f"/dashboard/clusters/{cluster}"),
        ("cluster status.json (the page's poll)", f"/dashboard/clusters/{cluster}/status.json"),
        ("create-cluster form", "/dashboard/clusters/new"),
        ("cluster config page", f"/dashboard/clusters/{cluster}/config"),
        ("template list", "/dashboard/templates"),
        ("template detail", f"/dashboard/templates/{template}"),
        ("create-template form", "/dashboard/templates/new"),
    ]
    admin_pages = [
        ("admin: template list (1,000 visible)", "/dashboard/templates"),
        ("admin: create-cluster form (1,000 templates)", "/dashboard/clusters/new"),
        ("admin: services page", "/dashboard/admin/services"),
    ]
    for who, token, pages in (("member", data.member, member_pages), ("admin", data.admin, admin_pages)):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            problem = sign_in(c, token)
            if problem:
                print(f"dashboard sign-in as the {who} failed: {problem}; its pages are skipped")
                continue
            for name, path in pages:

                def get(path: str = path, c: httpx.Client = c) -> str:
                    r = c.get(path)
                    return "" if r.status_code == 200 else f"GET {path} answered {r.status_code}"

                rows.append(timed(name, server, repeat, 2, get))
    return rows


# ----------------------------------------------------------------------------- CLIs


def client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_"))}
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def cli_commands(
    flotilla: Path, compat: Path | None, server: Server, data: Data
) -> list[tuple[str, list[str]]]:
    """(label, argv) of every list command to time; prints a note for clients not found."""
    endpoint = server.url + "/v1"
    out: list[tuple[str, list[str]]] = []
    own = [str(flotilla), "--os-token", data.member, "--os-endpoint-override", endpoint]
    own_admin = [str(flotilla), "--os-token", data.admin, "--os-endpoint-override", endpoint]
    out += [
        ("flotilla cluster-template-list (100)", [*own, "cluster-template-list"]),
        ("flotilla cluster-list (100)", [*own, "cluster-list"]),
        ("flotilla nodegroup-list", [*own, "nodegroup-list", data.clusters[0]]),
        ("flotilla keypair-list", [*own, "keypair-list"]),
        ("flotilla image-list", [*own, "image-list"]),
        ("admin: flotilla cluster-template-list --limit 1000", [*own_admin, "cluster-template-list", "--limit", "1000"]),
    ]  # fmt: skip
    magnum = compat / ".venv-magnum217" / "bin" / "magnum" if compat else None
    if magnum and magnum.exists():
        m = [str(magnum), "--os-token", data.member, "--os-endpoint-override", endpoint]
        out += [
            ("magnum cluster-template-list (100)", [*m, "cluster-template-list"]),
            ("magnum cluster-list (100)", [*m, "cluster-list"]),
        ]
    else:
        print(f"note: no legacy magnum client at {magnum} (scripts/setup-compat.sh builds it); skipped")
    osc = compat / ".venv-osc" / "bin" / "openstack" if compat else None
    if osc and osc.exists():
        o = [str(osc), "--os-auth-type", "admin_token", "--os-token", data.member, "--os-endpoint", endpoint]
        out += [
            ("openstack coe cluster template list (100)", [*o, "coe", "cluster", "template", "list"]),
            ("openstack coe cluster list (100)", [*o, "coe", "cluster", "list"]),
        ]
    else:
        print(f"note: no openstack client at {osc} (scripts/setup-compat.sh builds it); skipped")
    return out


def cli(flotilla: Path, compat: Path | None, server: Server, data: Data, repeat: int) -> list[Row]:
    rows: list[Row] = []
    env = client_env(OS_CLIENT_CONFIG_FILE=os.devnull)
    for name, argv in cli_commands(flotilla, compat, server, data):

        def run(argv: list[str] = argv) -> str:
            p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
            if p.returncode != 0:
                return f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-200:]}"
            return ""

        rows.append(timed(name, server, repeat, 1, run, children=True))
    return rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--repo", type=Path, default=HERE, help="checkout whose .venv/bin/flotilla runs (default: this)"
    )
    p.add_argument(
        "--compat-dir", type=Path, default=None,
        help="where .venv-magnum217 and .venv-osc live (default: --repo, else this checkout)",
    )  # fmt: skip
    p.add_argument("--repeat", type=int, default=40, help="requests per dashboard page (default 40)")
    p.add_argument("--cli-repeat", type=int, default=7, help="runs per CLI command (default 7)")
    p.add_argument("--skip-dashboard", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    flotilla = repo / ".venv" / "bin" / "flotilla"
    if not flotilla.exists():
        raise SystemExit(f"{flotilla} not found: make the checkout's venv first")
    compat = args.compat_dir
    if compat is None:
        compat = next(
            (d for d in (repo, HERE) if (d / ".venv-magnum217").exists() or (d / ".venv-osc").exists()), None
        )
    rev = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    print("bench command:", shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv))
    print(
        f"checkout: {repo} at {rev.stdout.strip() or '?'}; {os.cpu_count()} CPUs; load average {load_avg()}"
    )
    result: dict[str, Any] = {"repo": str(repo), "rev": rev.stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="flotilla-ux-") as tmp:
        data_dir = Path(tmp)
        with running(flotilla, data_dir, conductor=True) as server:
            data = populate(server, member_token(flotilla, data_dir))
        with running(flotilla, data_dir, conductor=False) as server:
            if not args.skip_dashboard:
                rows = dashboard(server, data, args.repeat)
                print_rows("dashboard pages, one request at a time (SQLite)", rows)
                result["dashboard"] = [r.as_dict() for r in rows]
            if not args.skip_cli:
                rows = cli(flotilla, compat, server, data, args.cli_repeat)
                print_rows("CLI list commands, a fresh process each (wall time of the command)", rows)
                result["cli"] = [r.as_dict() for r in rows]
    print(f"\nload average at the end: {load_avg()}")
    result["load_end"] = load_avg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
