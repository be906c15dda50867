"""Create, scale and delete times of real clusters on the local provider.

Starts its own ``flotilla serve`` (temporary data dir, its own dockerd unless
--docker-host is given), then for each run: create (bay-create → CREATE_COMPLETE),
with --rotate a CA rotation (PATCH /v1/certificates/ID → UPDATE_COMPLETE), scale +1
worker (→ UPDATE_COMPLETE), delete (→ gone). Prints the median and the
spread of several runs. Times are measured from the API request to the status,
polled every 50 ms. Never asserts anything.

    .venv/bin/python bench/lifecycle.py --coe swarm --masters 1 --nodes 2 --runs 3
    .venv/bin/python bench/lifecycle.py --coe swarm --runs 3 --settle 5   # scale a settled cluster
    .venv/bin/python bench/lifecycle.py --coe kubernetes --runs 3          # needs scripts/build-kube.sh
    .venv/bin/python bench/lifecycle.py --coe kubernetes --rotate --runs 1 # + CA rotation of the running cluster

Prints a per-step breakdown (from the server log's "step ... done in" lines) and, for
kubernetes, the memory (RSS) of each node's processes right after the create.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from flotilla_server import Server
from kube_timeline import node_timeline

from flotilla.drivers.providers.local import Engine, LocalProvider, leaks


def wait(srv: Server, uuid: str, timeout: float = 300) -> tuple[str, float]:
    start = time.monotonic()
    while True:
        r = srv.api("GET", f"/v1/clusters/{uuid}")
        if r.status_code == 404:
            return "DELETED", time.monotonic() - start
        status = r.json()["status"]
        if not status.endswith("IN_PROGRESS"):
            return status, time.monotonic() - start
        if time.monotonic() - start > timeout:
            return f"TIMEOUT ({status})", time.monotonic() - start
        time.sleep(0.05)


def timed(
    srv: Server, method: str, path: str, uuid: str | None, body: object | None = None
) -> tuple[str, float, str]:
    start = time.monotonic()
    r = srv.api(method, path, json=body) if body is not None else srv.api(method, path)
    if r.status_code >= 300:
        return f"HTTP {r.status_code}", time.monotonic() - start, r.text
    uuid = uuid or r.json()["uuid"]
    status, _ = wait(srv, uuid)
    return status, time.monotonic() - start, uuid


STEP_RE = re.compile(r"cluster (\S+): step (.+) done in ([0-9.]+)s")
#: CA rotation: how long each part of a phase took, and rotate.sh's own marks on the nodes.
PART_RE = re.compile(r"cluster \S+: rotation part (.+) took ([0-9.]+)s")
MARK_RE = re.compile(r"cluster \S+: (\S+): rotate\.sh (\S+): (.+)$", re.M)


def step_times(log: str) -> dict[str, list[float]]:
    """Per step name, the durations the runner logged (over every cluster and run)."""
    out: dict[str, list[float]] = {}
    for m in STEP_RE.finditer(log):
        out.setdefault(m.group(2), []).append(float(m.group(3)))
    return out


def node_memory(srv: Server, data_dir: Path, uuid: str) -> str:
    """RSS of every process in each node (MB), summed per node, from ps inside the node."""
    engine = Engine.connect(srv.docker_host or None, data_dir)
    lines = []
    for node in LocalProvider(engine).list_nodes(uuid):
        r = engine.run(["exec", node.name, "ps", "-eo", "rss=,comm="], check=False)
        procs: dict[str, int] = {}
        for row in r.stdout.splitlines():
            rss, _, comm = row.strip().partition(" ")
            if rss.isdigit():
                procs[comm] = procs.get(comm, 0) + int(rss)
        top = ", ".join(f"{c} {kb // 1024}" for c, kb in sorted(procs.items(), key=lambda x: -x[1])[:8])
        # RSS counts the shared pages of the one multi-call binary once per process; the
        # node's memory cgroup (its own root, private cgroupns) counts them once.
        cg = engine.run(
            ["exec", node.name, "cat", "/sys/fs/cgroup/memory/memory.usage_in_bytes"], check=False
        )
        usage = f"{int(cg.stdout.strip()) // 2**20} MB" if cg.stdout.strip().isdigit() else "?"
        lines.append(f"  {node.name}: cgroup {usage}, {sum(procs.values()) // 1024} MB RSS summed ({top})")
    return "memory per node right after create:\n" + "\n".join(lines)


def copy_logs(engine: Engine, uuid: str, dest: Path) -> None:
    """Each node's service logs, for reading the daemons' own timestamps afterwards."""
    dest.mkdir(parents=True, exist_ok=True)
    for node in LocalProvider(engine).list_nodes(uuid):
        engine.run(["cp", f"{node.name}:/var/log/flotilla", str(dest / node.name)], check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coe", default="swarm", choices=["swarm", "swarm-mode", "docker", "kubernetes"])
    p.add_argument("--flavor", default="m1.small")
    p.add_argument("--master-flavor", default=None, help="Default: m1.medium for kubernetes, else --flavor.")
    p.add_argument("--masters", type=int, default=1)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tls-disabled", action="store_true")
    p.add_argument(
        "--keep", action="store_true", help="Keep the data dir (logs) even when nothing was left behind."
    )
    p.add_argument(
        "--settle", type=float, default=0.0,
        help="Seconds to wait after CREATE_COMPLETE before the scale (default 0: scale at once, "
        "while the new nodes' daemons are still settling).",
    )  # fmt: skip
    p.add_argument("--docker-host", help="Use this Docker Engine instead of starting one.")
    p.add_argument(
        "--logs", type=Path, default=None,
        help="kubernetes: copy each node's /var/log/flotilla to LOGS/run<N>/<node> after the create.",
    )  # fmt: skip
    p.add_argument(
        "--rotate", action="store_true", help="Rotate the CA of each created cluster (before the scale)."
    )
    args = p.parse_args()
    print("command:", " ".join(shlex.quote(a) for a in sys.argv))
    data_dir = Path(tempfile.mkdtemp(prefix="flotilla-bench-"))
    srv = Server(data_dir=data_dir, docker_host=args.docker_host or "")
    if not args.docker_host:
        srv.extra_env["FLOTILLA_LOCAL__DOCKER_HOST"] = ""
    srv.start()
    results: dict[str, list[float]] = {"create": [], "rotate CA": [], "scale +1": [], "delete": []}
    created: list[str] = []
    try:
        srv.fl("image-build", "node", "--os-distro", "debian")
        master_flavor = args.master_flavor or ("m1.medium" if args.coe == "kubernetes" else args.flavor)
        tpl = ["cluster-template-create", "bench", "--coe", args.coe, "--image", "node", "--external-network",
               "public", "--flavor", args.flavor, "--master-flavor", master_flavor,
               "--docker-storage-driver", "overlay2"]  # fmt: skip
        if args.masters > 1:
            tpl.append("--master-lb-enabled")
        if args.tls_disabled:
            tpl.append("--tls-disabled")
        srv.fl(*tpl)
        for i in range(args.runs):
            body = {"name": f"b{i}", "cluster_template_id": "bench", "master_count": args.masters,
                    "node_count": 1 if args.coe == "docker" else args.nodes}  # fmt: skip
            t0 = time.time()
            status, secs, uuid = timed(srv, "POST", "/v1/clusters", None, body)
            if not status.startswith("HTTP"):
                created.append(uuid)
            print(f"run {i + 1}: create {status} in {secs:.2f} s", flush=True)
            if status != "CREATE_COMPLETE":
                print(srv.cluster(uuid)["status_reason"] if status.startswith("CREATE") else uuid)
                break
            results["create"].append(secs)
            if args.coe == "kubernetes":
                print(node_memory(srv, data_dir, uuid), flush=True)
                engine = Engine.connect(srv.docker_host or None, data_dir)
                print(node_timeline(engine, uuid, t0), flush=True)
                if args.logs is not None:
                    copy_logs(engine, uuid, args.logs / f"run{i + 1}")
            if args.rotate:
                status, secs, _ = timed(srv, "PATCH", f"/v1/certificates/{uuid}", uuid, None)
                print(f"run {i + 1}: rotate CA {status} in {secs:.2f} s", flush=True)
                if status == "UPDATE_COMPLETE":
                    results["rotate CA"].append(secs)
                else:
                    print(srv.cluster(uuid)["status_reason"])
            if args.coe != "docker":
                time.sleep(args.settle)
                patch = [{"op": "replace", "path": "/node_count", "value": args.nodes + 1}]
                status, secs, _ = timed(srv, "PATCH", f"/v1/clusters/{uuid}", uuid, patch)
                print(f"run {i + 1}: scale +1 {status} in {secs:.2f} s", flush=True)
                if status == "UPDATE_COMPLETE":
                    results["scale +1"].append(secs)
            status, secs, _ = timed(srv, "DELETE", f"/v1/clusters/{uuid}", uuid, None)
            print(f"run {i + 1}: delete {status} in {secs:.2f} s", flush=True)
            if status == "DELETED":
                results["delete"].append(secs)
    except httpx.HTTPError as exc:
        print(f"server error: {exc}")
    finally:
        srv.stop()
        log_text = srv.log()
        clean = True
        try:
            engine = Engine.connect(args.docker_host or None, data_dir)
            left = [item for uuid in created for item in leaks(engine, uuid)]
            if left:
                clean = False
                print(f"LEFT BEHIND: {left}")
            engine.stop()  # only our own dockerd; a given --docker-host is left running
        except Exception as exc:
            clean = False
            print(f"could not check or stop the bench dockerd: {exc}")
        if clean and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"data dir (server log, dockerd log): {data_dir}")
    tls = "no TLS" if args.tls_disabled else "TLS"
    settle = f", scale {args.settle:g} s after create" if args.settle else ""
    print(f"\n{args.coe} {args.masters}+{args.nodes} ({tls}), {args.runs} runs{settle}, seconds:")
    print(f"{'phase':<10} {'median':>8} {'min':>8} {'max':>8}  n")
    for phase, values in results.items():
        if values:
            print(
                f"{phase:<10} {statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}  {len(values)}"
            )
    steps = step_times(log_text)
    if steps:
        print(f"\nper step (all operations), seconds:\n{'step':<44} {'median':>8} {'max':>8}  n")
        for name, values in steps.items():
            print(f"{name:<44} {statistics.median(values):8.2f} {max(values):8.2f}  {len(values)}")
    parts = PART_RE.findall(log_text)
    if parts:
        print("\nCA rotation parts, in order (all runs), seconds:")
        for name, secs in parts:
            print(f"  {name:<60} {float(secs):8.2f}")
        print("rotate.sh on the nodes (seconds since that call started):")
        for node, cmd, line in MARK_RE.findall(log_text):
            print(f"  {node} {cmd}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
