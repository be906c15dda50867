"""CA rotation of a running Kubernetes cluster, in three phases that keep pods running and
the API answering (after GKE's start/complete credential rotation and Gardener's
multi-phase CA rotation, done here as one operation).

Two rules make it safe: whoever checks a certificate trusts the new CA before anyone
shows one from it, and everyone shows a certificate from the new CA before the old CA
stops being trusted. What each component reads when it starts and what it reloads by
itself (Kubernetes 1.37, etcd 3.7) decides what restarts when:

* reloaded from its file when that changes: the API server's ``--client-ca-file`` and
  serving certificate, the kubelet's client CA and serving certificate; etcd reads its own
  certificate and the API server its etcd client certificate at every new connection;
* read once at start: every kubeconfig (CA and client certificate), etcd's trusted CA, the
  API server's CA for etcd and for kubelets, its kubelet client certificate, the
  controller-manager's root CA (the pods' ``kube-root-ca.crt``).

0. (the conductor) a new CA; the old one stays trusted (``ctx.trust_bundle()`` = new + old).
1. **trust both**: ``ca.crt`` and every kubeconfig's CA become the bundle. The clients
   (controller-manager, scheduler, kubelet, kube-proxy, flanneld) restart on every node at
   once and etcd on each master; the API server is not restarted: it reloads its client
   CA, and the phase waits until it accepts a client certificate of the new CA.
2. **new certificates**: every certificate is issued again from the new CA (API server,
   etcd, kubelets, the API server's etcd and kubelet client certificates, the
   controller-manager, scheduler, kube-proxy and flannel kubeconfigs), trust stays the
   bundle. The API server is handed over, master after master, while the clients restart;
   only then (every API server trusts the new CA for etcd and the kubelets) do etcd and
   the kubelets get their new serving certificates, which they reload by themselves (the
   phase waits until each shows one). The service-account signing key is kept (derived
   keys outlive CA rotations), so pods' tokens stay valid.
3. **trust the new CA only**: the old CA leaves the conductor's store and every trust
   point; the clients restart while etcd restarts and the API server is handed back on
   each master. From here an old client certificate is refused. CoreDNS (whose API client
   read the old CA when it started) is rolled to new pods once the controller-manager
   published the new ``kube-root-ca.crt``.

A restart is the node supervisor's: ``rotate.sh`` stops the process and waits until the
restarted one is healthy. The API server is handed over without a gap: a second
instance shares port 6443 (``--permit-port-sharing``) while the supervisor's instance is
stopped; phase 2 starts that second instance and holds the supervisor's, phase 3 lets the
supervisor start its own again and stops the second one (one API server start per phase).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable

import yaml
from cryptography import x509

from flotilla.domain import NodeInfo
from flotilla.drivers.base import StepContext
from flotilla.drivers.coe.parallel import run_parallel

from . import bootstrap, steps
from .bootstrap import KUBE, PKI, NodePlan
from .kubeapi import ApiFailed, Errors
from .rotation_nodes import Files, put, read, run, script, timed

KUBECONFIGS = tuple(
    f"{KUBE}/{n}.kubeconfig" for n in ("kubelet", "proxy", "flannel", "controller-manager", "scheduler")
)
NODE_SERVICES = ("kubelet", "kube-proxy", "flanneld")
#: Clients of the API server (restarting them leaves the API and running pods alone).
MASTER_CLIENTS = ("kube-controller-manager", "kube-scheduler", *NODE_SERVICES)
HANDOFF_CN = "kube-apiserver-handoff"
#: A client certificate of the new CA on the masters: phase 1 waits until the API server accepts it.
PROBE = "rotation-probe"
PROBE_CN = "flotilla:rotation-probe"
#: Serving certificates the API server checks (etcd's, the kubelets'): written in phase 2 only
#: after the API server was handed over to an instance that trusts the new CA.
LATE = tuple(f"{PKI}/{n}" for n in ("etcd.crt", "etcd.key", "kubelet.crt", "kubelet.key"))
#: The new CA alone (phase 2 checks that etcd and the kubelets show certificates from it).
NEW_CA = f"{PKI}/rotation-ca.crt"
COREDNS_TIMEOUT = 90.0

__all__ = ["script"]


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


class Cluster:
    """The cluster's nodes as a phase sees them."""

    def __init__(self, ctx: StepContext) -> None:
        spec = ctx.spec
        self.infos = steps._nodes(ctx)
        self.masters = steps._plans(ctx, self.infos, spec.master.names, "master")
        workers = steps._plans(ctx, self.infos, spec.worker.names, "worker")
        self.plans = {p.name: p for p in (*self.masters, *workers)}

    def each(self, ctx: StepContext, what: str, work: Callable[[NodeInfo, NodePlan], object]) -> None:
        """``work`` on every node at once."""
        with timed(ctx, what):
            run_parallel(list(self.plans), lambda n: work(self.infos[n], self.plans[n]), ctx, what)

    def restart_clients(self, ctx: StepContext, phase: str) -> None:
        def clients(info: NodeInfo, plan: NodePlan) -> None:
            run(ctx, info, "restart", *(MASTER_CLIENTS if plan.role == "master" else NODE_SERVICES))

        self.each(ctx, f"{phase}: clients restarted", clients)

    def on_masters(self, ctx: StepContext, phase: str, *commands: tuple[str, ...]) -> None:
        """``rotate.sh`` ``commands`` on each master (in one call), one master after another."""
        what = ", ".join(" ".join(c) for c in commands)
        for plan in self.masters:
            ctx.progress(f"{phase}: {plan.name}: {what}")
            with timed(ctx, f"{phase}: {what}"):
                run(ctx, self.infos[plan.name], *[a for c in commands for a in ("--", *c)][1:])

    def together(self, ctx: StepContext, what: str, *parts: Callable[[], object]) -> None:
        """``parts`` at the same time (each may itself work node by node)."""
        with timed(ctx, what):
            run_parallel([str(i) for i in range(len(parts))], lambda i: parts[int(i)](), ctx, what)


def _retrust(ctx: StepContext, cluster: Cluster, phase: str, bundle: str, extra: Files | None = None) -> None:
    """Every node's ``ca.crt`` and kubeconfigs trust ``bundle`` (nothing else changes)."""

    def write(info: NodeInfo, plan: NodePlan) -> None:
        files = with_trust(read(ctx, info, KUBECONFIGS), bundle)
        if plan.role == "master":
            files.update(extra or {})
        put(ctx, info, files)

    cluster.each(ctx, f"{phase}: trust written", write)


def trust_both(ctx: StepContext) -> None:
    """Phase 1: the bundle (old + new CA) everywhere; clients and etcd restarted, the API
    server's client CA reloaded by itself."""
    phase = "trusting old and new CA"
    cluster = Cluster(ctx)
    probe = ctx.client_cert(PROBE_CN)
    _retrust(ctx, cluster, phase, ctx.trust_bundle(),
             {f"{PKI}/{PROBE}.crt": probe.cert_pem.encode(), f"{PKI}/{PROBE}.key": probe.key_pem.encode()})  # fmt: skip
    # Nobody shows a certificate of the new CA yet: every restart at once.
    cluster.together(
        ctx, f"{phase}: restarts",
        lambda: cluster.restart_clients(ctx, phase),
        lambda: cluster.on_masters(ctx, phase, ("restart", "etcd"), ("accepts", PROBE)),
    )  # fmt: skip


def reissue(ctx: StepContext) -> None:
    """Phase 2: every certificate from the new CA, trust still the bundle."""
    phase = "new certificates"
    cluster = Cluster(ctx)
    infos, masters = cluster.infos, cluster.masters
    server = steps.endpoint(ctx, infos)
    api_ips = [server.removeprefix("https://").rsplit(":", 1)[0]]
    fl = steps.flannel(ctx.spec)
    bundle = ctx.trust_bundle()
    late: dict[str, Files] = {}

    def write(info: NodeInfo, plan: NodePlan) -> None:
        files = bootstrap.address_files(ctx, plan, masters, server, fl, api_ips)
        new_ca = files[f"{PKI}/ca.crt"]  # the issuing CA alone, before the bundle replaces it
        files = with_trust(files, bundle)
        files.pop(bootstrap.MARKER, None)  # the supervisor is past it
        files[NEW_CA] = new_ca
        late[plan.name] = {p: files.pop(p) for p in LATE if p in files}
        if plan.role == "master":
            files.update(handoff_cert(ctx, files[f"{PKI}/apiserver.crt"]))
        put(ctx, info, files)

    def serve_new(info: NodeInfo, plan: NodePlan) -> None:
        put(ctx, info, late[plan.name])
        ports = ["10250", "2379:apiserver-etcd-client"] if plan.role == "master" else ["10250"]
        run(ctx, info, "serves-new", *ports)

    cluster.each(ctx, f"{phase}: certificates written", write)
    # The clients' new certificates and kubeconfigs (still trusting both CAs) need no order.
    cluster.together(
        ctx, f"{phase}: restarts",
        lambda: cluster.on_masters(ctx, phase, ("handoff-begin",)),
        lambda: cluster.restart_clients(ctx, phase),
    )  # fmt: skip
    # Every API server trusts the new CA for etcd and the kubelets now: they reload theirs.
    cluster.each(ctx, f"{phase}: serving certificates written", serve_new)


def trust_new_only(ctx: StepContext) -> None:
    """Phase 3: the old CA retired; trust narrowed to the new CA; CoreDNS rolled."""
    phase = "trusting the new CA only"
    ctx.retire_previous_ca()
    cluster = Cluster(ctx)
    new_ca = ctx.trust_bundle()
    _retrust(ctx, cluster, phase, new_ca)

    # Everyone shows a certificate of the new CA since phase 2: every restart at once.
    cluster.together(
        ctx, f"{phase}: restarts",
        lambda: cluster.restart_clients(ctx, phase),
        lambda: cluster.on_masters(ctx, phase, ("restart", "etcd"), ("handoff-end",)),
    )  # fmt: skip
    # After the restarts, not beside them: while etcd and the API server restart, the new
    # pod took longer to be ready (measured 20-40 s beside them, 15 s after, under load).
    with timed(ctx, f"{phase}: CoreDNS rolled"):
        restart_coredns(ctx, new_ca)
    leftovers = ["rm", "-f", f"{PKI}/{PROBE}.crt", f"{PKI}/{PROBE}.key", NEW_CA]
    cluster.each(ctx, f"{phase}: rotation files removed", lambda i, p: ctx.provider.exec(i, leftovers))


def restart_coredns(ctx: StepContext, ca: str) -> None:
    """Once the controller-manager published ``ca`` as ``kube-root-ca.crt`` in kube-system,
    ``kubectl rollout restart`` of CoreDNS (a new pod before the old one goes), waited for."""
    deadline = time.monotonic() + COREDNS_TIMEOUT
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation: int | None = None
    detail = "waiting for the controller-manager to publish the new CA"
    with steps.api(ctx) as k:
        while True:
            # etcd and the API server may be restarting meanwhile: a failed request is retried.
            try:
                if generation is None:
                    published = k.config_map_data("kube-system", "kube-root-ca.crt").get("ca.crt") or ""
                    if published.strip() == ca.strip():
                        generation = k.restart_deployment("kube-system", "coredns", stamp)
                        detail = "rollout started"
                else:
                    done, detail = k.rolled_out("kube-system", "coredns", generation)
                    if done:
                        return
            except (ApiFailed, *Errors) as exc:
                detail = f"{detail} ({str(exc)[:100] or type(exc).__name__})"
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"CoreDNS not restarted on the new CA within {COREDNS_TIMEOUT:.0f} s: {detail}"
                )
            ctx.progress(f"restarting CoreDNS: {detail}")
            time.sleep(0.3)
