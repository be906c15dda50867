"""CA rotation of a running Kubernetes cluster, in three phases that keep pods running and
the API answering (after GKE's start/complete credential rotation and Gardener's
multi-phase CA rotation, done here as one operation):

0. (the conductor) a new CA; the old one stays trusted (``ctx.trust_bundle()`` = new + old).
1. **trust both**: every trust point gets the bundle (``ca.crt``: the API server's client
   CA, kubelet and etcd CA, the kubelets' client CA, etcd's peer CA; every kubeconfig's
   ``certificate-authority-data``; the controller-manager's root CA, which becomes the
   pods' ``kube-root-ca.crt``); each component restarts, one at a time, still on its old
   certificate.
2. **new certificates**: every serving and client certificate is issued again from the
   new CA (API server, etcd, kubelets, the API server's etcd and kubelet client
   certificates, the controller-manager, scheduler, kube-proxy and flannel kubeconfigs),
   trust stays the bundle; restart one at a time. The service-account signing key is
   kept (derived keys outlive CA rotations), so pods' tokens stay valid.
3. **trust the new CA only**: the old CA leaves the conductor's store and every trust
   point; restart one at a time. From here an old client certificate is refused. CoreDNS
   (whose API client read the old CA when it started) is rolled to new pods.

A restart is the node supervisor's: ``rotate.sh`` stops the process and waits until the
restarted one is healthy. The API server is handed over without a gap: a second
instance shares port 6443 (``--permit-port-sharing``) until the restarted one serves.
etcd and the API server restart one master after another; the clients (controller-
manager, scheduler, kubelet, kube-proxy, flanneld: running containers do not notice)
node by node in parallel, before the servers in phase 1 and after them in phases 2-3.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable, Sequence
from importlib import resources

import yaml
from cryptography import x509

from flotilla.domain import NodeInfo
from flotilla.drivers.base import StepContext
from flotilla.drivers.coe.parallel import run_parallel

from . import bootstrap, steps
from .bootstrap import KUBE, PKI, NodePlan

SCRIPT = "/etc/flotilla/rotate.sh"
KUBECONFIGS = tuple(
    f"{KUBE}/{n}.kubeconfig" for n in ("kubelet", "proxy", "flannel", "controller-manager", "scheduler")
)
NODE_SERVICES = ("kubelet", "kube-proxy", "flanneld")
HANDOFF_CN = "kube-apiserver-handoff"
RESTART_TIMEOUT = 150.0
COREDNS_TIMEOUT = 90.0

Files = dict[str, bytes]
#: (context, node, its plan, what the node holds now under the paths asked for) -> files to write
Render = Callable[[StepContext, NodeInfo, NodePlan, Files], Files]


def script() -> bytes:
    return resources.files(__package__).joinpath("rotate.sh").read_bytes()


def with_trust(files: Files, bundle: str) -> Files:
    """``files`` with ``ca.crt`` and every kubeconfig's CA data replaced by ``bundle``."""
    out = dict(files)
    out[f"{PKI}/ca.crt"] = bundle.encode()
    data = base64.b64encode(bundle.encode()).decode()
    for path in KUBECONFIGS:
        if path in out:
            doc = yaml.safe_load(out[path])
            for entry in doc.get("clusters") or []:
                cluster = entry.setdefault("cluster", {})
                cluster.pop("certificate-authority", None)
                cluster["certificate-authority-data"] = data
            out[path] = yaml.safe_dump(doc, sort_keys=False).encode()
    return out


def handoff_cert(ctx: StepContext, apiserver_crt: bytes) -> Files:
    """A serving certificate for the handoff instance: the API server's names, another CN
    (so ``rotate.sh`` can tell which instance answered)."""
    san = (
        x509.load_pem_x509_certificate(apiserver_crt)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    tls = ctx.server_tls(HANDOFF_CN, san.get_values_for_type(x509.DNSName),
                        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])  # fmt: skip
    return {
        f"{PKI}/apiserver-handoff.crt": tls.cert_pem.encode(),
        f"{PKI}/apiserver-handoff.key": tls.key_pem.encode(),
    }


def _read(ctx: StepContext, node: NodeInfo, paths: Sequence[str]) -> Files:
    out: Files = {}
    for path in paths:
        r = ctx.provider.exec(node, ["cat", path], timeout=20)
        if r.ok:
            out[path] = r.stdout.encode()
    return out


def _run(ctx: StepContext, node: NodeInfo, *args: str) -> None:
    r = ctx.provider.exec(node, ["sh", SCRIPT, *args], timeout=RESTART_TIMEOUT)
    if not r.ok:
        raise RuntimeError(f"{node.name}: {(r.stderr or r.stdout).strip()[-600:]}")


#: Clients of the API server (restarting them leaves the API and running pods alone).
MASTER_CLIENTS = ("kube-controller-manager", "kube-scheduler", *NODE_SERVICES)


def restart_servers(ctx: StepContext, node: NodeInfo, phase: str) -> None:
    """etcd, then the API server handed over (no gap): one at a time."""
    ctx.progress(f"{phase}: {node.name}: restarting etcd")
    _run(ctx, node, "restart", "etcd")
    ctx.progress(f"{phase}: {node.name}: handing over kube-apiserver")
    _run(ctx, node, "handoff")


def roll(ctx: StepContext, phase: str, reads: Sequence[str], render: Render, *, clients_first: bool) -> None:
    """Write every node's files (``render``), then restart: the masters' etcd and API
    server one master after another, and the clients (controller-manager, scheduler,
    kubelets, kube-proxies, flannels: node by node in parallel) before them when
    ``clients_first`` (phase 1: they must trust the new CA before any server presents a
    certificate from it), else after them."""
    spec = ctx.spec
    infos = steps._nodes(ctx)
    masters = steps._plans(ctx, infos, spec.master.names, "master")
    workers = steps._plans(ctx, infos, spec.worker.names, "worker")
    plans = {p.name: p for p in (*masters, *workers)}

    def write(name: str) -> None:
        plan, info = plans[name], infos[name]
        crt = f"{PKI}/apiserver.crt"
        held = _read(ctx, info, [*reads, crt] if plan.role == "master" else reads)
        files = render(ctx, info, plan, held)
        current = files.get(crt) or held.get(crt)
        if plan.role == "master" and current:
            files.update(handoff_cert(ctx, current))
        ctx.provider.put_files(info, {SCRIPT: script(), **files})

    def clients(name: str) -> None:
        _run(
            ctx, infos[name], "restart", *(MASTER_CLIENTS if plans[name].role == "master" else NODE_SERVICES)
        )

    run_parallel(list(plans), write, ctx, f"{phase}: files written")
    if clients_first:
        run_parallel(list(plans), clients, ctx, f"{phase}: clients restarted")
    for plan in masters:
        restart_servers(ctx, infos[plan.name], phase)
    if not clients_first:
        run_parallel(list(plans), clients, ctx, f"{phase}: clients restarted")


def _retrust(ctx: StepContext, node: NodeInfo, plan: NodePlan, held: Files) -> Files:
    """Only trust changes: the node's own kubeconfigs with the bundle as their CA."""
    return with_trust({p: v for p, v in held.items() if p in KUBECONFIGS}, ctx.trust_bundle())


def trust_both(ctx: StepContext) -> None:
    """Phase 1: the bundle (old + new CA) everywhere, components restarted."""
    roll(ctx, "trusting old and new CA", KUBECONFIGS, _retrust, clients_first=True)


def reissue(ctx: StepContext) -> None:
    """Phase 2: every certificate from the new CA, trust still the bundle."""
    spec = ctx.spec
    infos = steps._nodes(ctx)
    masters = steps._plans(ctx, infos, spec.master.names, "master")
    server = steps.endpoint(ctx, infos)
    api_ips = [server.removeprefix("https://").rsplit(":", 1)[0]]
    fl = steps.flannel(spec)
    bundle = ctx.trust_bundle()

    def render(ctx: StepContext, node: NodeInfo, plan: NodePlan, held: Files) -> Files:
        files = bootstrap.address_files(ctx, plan, masters, server, fl, api_ips)
        files.pop(bootstrap.MARKER, None)  # the supervisor is past it
        return with_trust(files, bundle)

    roll(ctx, "new certificates", (), render, clients_first=False)


def trust_new_only(ctx: StepContext) -> None:
    """Phase 3: the old CA retired; trust narrowed to the new CA; CoreDNS rolled."""
    ctx.retire_previous_ca()
    roll(ctx, "trusting the new CA only", KUBECONFIGS, _retrust, clients_first=False)
    restart_coredns(ctx)


def restart_coredns(ctx: StepContext) -> None:
    """``kubectl rollout restart`` of CoreDNS (a new pod before the old one goes), waited for."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    deadline = time.monotonic() + COREDNS_TIMEOUT
    with steps.api(ctx) as k:
        generation = k.restart_deployment("kube-system", "coredns", stamp)
        while True:
            done, detail = k.rolled_out("kube-system", "coredns", generation)
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CoreDNS not rolled out within {COREDNS_TIMEOUT:.0f} s: {detail}")
            ctx.progress(f"restarting CoreDNS: {detail}")
            time.sleep(0.3)
