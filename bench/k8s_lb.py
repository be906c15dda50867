"""Time from "Service of type LoadBalancer created" to "answering at its external address".

Starts its own ``flotilla serve`` (temporary data dir, its own dockerd unless --docker-host
is given), creates one Kubernetes cluster (1 master + 1 node by default), loads busybox
into it (``cluster-image-load``), runs the guide's nginx-style Deployment (busybox httpd),
waits until its pods are Ready, then for each run: creates the Service (type LoadBalancer)
through the API server, and measures with 20 ms polls

* ingress: until ``status.loadBalancer.ingress[0].ip`` is written,
* answering: until ``GET http://<ingress>/hostname`` from this process answers 200,
* gone: after deleting the service, until its load balancer container is gone.

Prints each run and the median. Never asserts anything.

    flock /tmp/flotilla-engine.lock .venv/bin/python bench/k8s_lb.py --runs 5
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from flotilla_server import Server
from kube_helpers import Kubectl, _running_pods, kubeconfig
from kube_lb_flow import APP, deploy, service

from flotilla.certs.authority import generate_csr
from flotilla.domain import TlsMaterial
from flotilla.drivers.coe.kubernetes.kubeapi import KubeApi
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

POLL = 0.02


def admin_api(srv: Server, cluster: dict[str, Any]) -> KubeApi:
    csr, key = generate_csr("admin", "system:masters")
    cert = srv.api("POST", "/v1/certificates", json={"cluster_uuid": cluster["uuid"], "csr": csr}).json()[
        "pem"
    ]
    ca = srv.api("GET", f"/v1/certificates/{cluster['uuid']}").json()["pem"]
    return KubeApi(cluster["api_address"], TlsMaterial(ca, cert, key), timeout=5)


def one_run(api: KubeApi, provider: LocalProvider, uuid: str, name: str) -> dict[str, float]:
    path = f"/api/v1/namespaces/default/services/{name}"
    started = time.monotonic()
    api.apply(service(name))
    created = time.monotonic()
    ip = ""
    while not ip:
        status = api._c.get(path).json().get("status") or {}
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        ip = str(ingress[0].get("ip") or "") if ingress else ""
        if not ip:
            time.sleep(POLL)
        if time.monotonic() - started > 120:
            raise TimeoutError(f"service {name}: no ingress within 120 s")
    ingress_at = time.monotonic()
    while True:
        try:
            if httpx.get(f"http://{ip}/hostname", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > 120:
            raise TimeoutError(f"service {name}: {ip} did not answer within 120 s")
        time.sleep(POLL)
    answering = time.monotonic()
    api._c.delete(path)
    deleted = time.monotonic()
    while any(lb.address == ip for lb in provider.list_load_balancers(uuid)):
        time.sleep(POLL)
    gone = time.monotonic()
    return {
        "create call": created - started,
        "ingress": ingress_at - started,
        "answering": answering - started,
        "lb gone": gone - deleted,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--interval", default="1", help="conductor.service_lb_interval (seconds, default 1)")
    p.add_argument("--docker-host", help="Use this Docker Engine instead of starting one.")
    p.add_argument("--keep", action="store_true", help="Keep the data dir (logs).")
    args = p.parse_args()
    print("command:", " ".join(shlex.quote(a) for a in sys.argv))
    data_dir = Path(tempfile.mkdtemp(prefix="flotilla-bench-lb-"))
    srv = Server(data_dir=data_dir, docker_host=args.docker_host or "")
    if not args.docker_host:
        srv.extra_env["FLOTILLA_LOCAL__DOCKER_HOST"] = ""
    srv.extra_env["FLOTILLA_CONDUCTOR__SERVICE_LB_INTERVAL"] = args.interval
    srv.start()
    results: list[dict[str, float]] = []
    uuid = ""
    engine: Engine | None = None
    try:
        srv.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
               "--kubernetes", "yes", timeout=600)  # fmt: skip
        srv.fl("cluster-template-create", "k8s", "--coe", "kubernetes", "--image", "kube", "--external-network",
               "public", "--master-flavor", "m1.medium", "--flavor", "m1.small", "--network-driver", "flannel",
               "--docker-storage-driver", "overlay2")  # fmt: skip
        srv.fl("cluster-create", "lb", "--cluster-template", "k8s", "--master-count", "1", "--node-count",
               str(args.nodes), "--wait", timeout=600)  # fmt: skip
        cluster = srv.cluster("lb")
        uuid = cluster["uuid"]
        print(f"cluster {cluster['status']}", flush=True)
        srv.fl("cluster-image-load", "lb", "busybox", timeout=300)
        k = Kubectl(kubeconfig(srv, cluster, data_dir / "kubeconfig"))
        deploy(k)
        _running_pods(k, f"app={APP}", 2)
        engine = Engine.connect(args.docker_host or None, data_dir)
        provider = LocalProvider(engine)
        with admin_api(srv, cluster) as api:
            for i in range(args.runs):
                r = one_run(api, provider, uuid, f"web{i}")
                results.append(r)
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in r.items()), flush=True)
        srv.fl("cluster-delete", "lb", "--wait", timeout=300)
    except Exception as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}")
    finally:
        srv.stop()
        clean = True
        try:
            engine = engine or Engine.connect(args.docker_host or None, data_dir)
            left = leaks(engine, uuid) if uuid else []
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
    if results:
        print(
            f"\nLoadBalancer service, 1+{args.nodes}, interval {args.interval} s, {len(results)} runs, seconds:"
        )
        print(f"{'phase':<12} {'median':>8} {'min':>8} {'max':>8}")
        for phase in results[0]:
            values = [r[phase] for r in results]
            print(f"{phase:<12} {statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
