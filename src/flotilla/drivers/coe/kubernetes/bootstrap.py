"""What a Kubernetes node is made of: files (configs, certificates, kubeconfigs) and
services (one shell snippet per long-running process) that the node supervisor
(``node.sh``, the node's main process) starts and restarts.

Two sets per node:

* :func:`static_files`: independent of any address, given to the provider with the
  node (the supervisor starts containerd and imports the images at once);
* :func:`address_files`: certificates with the addresses the provider gave the nodes,
  kubeconfigs naming the API server, the services. Written into the running node;
  ``/var/lib/flotilla/bootstrap.env`` is written last (paths are written in sorted
  order) and tells the supervisor to start the services.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import yaml
from cryptography.hazmat.primitives import serialization

from flotilla.domain import TlsMaterial
from flotilla.drivers.base import ClusterSpec, StepContext

from . import gate
from .artifacts import NODE_DIR
from .labels import CLUSTER_DOMAIN, DEFAULT_SERVICE_CIDR, DNS_SERVICE_IP, FlannelSettings

PKI = "/etc/kubernetes/pki"
KUBE = "/etc/kubernetes"
SERVICES = "/etc/flotilla/services"
MARKER = "/var/lib/flotilla/bootstrap.env"
SUPERVISOR = "/etc/flotilla/node.sh"
API_PORT = 6443
#: Plain-HTTP port of ``tls_disabled`` clusters (Magnum's insecure port).
INSECURE_PORT = 8080
KUBERNETES_SERVICE_IP = "10.254.0.1"
PAUSE_IMAGE = "flotilla.local/pause:3.10"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"
SA_KEY_PURPOSE = "kubernetes service-account signing key"
#: flanneld's identity; the Node authorizer lets a kubelet read only its own Node.
FLANNEL_USER = "flotilla:flannel"
#: What pods resolve through when CoreDNS forwards (nodes have no upstream resolver).
UPSTREAM_RESOLV = "nameserver 127.0.0.1\n"


@dataclass(frozen=True)
class NodePlan:
    """One node as the bootstrap renders it."""

    name: str
    role: str  # master | worker
    address: str
    #: A master joining a running control plane (a replacement): its etcd member was added
    #: first and starts with ``--initial-cluster-state=existing``.
    joining: bool = False


def supervisor_script() -> bytes:
    return resources.files(__package__).joinpath("node.sh").read_bytes()


def command() -> list[str]:
    return ["sh", SUPERVISOR]


def containerd_config() -> str:
    return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Lowering the sandbox's oom_score_adj needs CAP_SYS_RESOURCE, which nodes lack here.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
"""


def static_files(spec: ClusterSpec, flannel: FlannelSettings) -> dict[str, bytes]:
    net_conf = {"Network": flannel.network_cidr, "SubnetLen": flannel.subnetlen,
                "Backend": {"Type": flannel.backend}}  # fmt: skip
    return {
        SUPERVISOR: supervisor_script(),
        "/etc/containerd/config.toml": containerd_config().encode(),
        "/etc/kube-flannel/net-conf.json": json.dumps(net_conf).encode(),
        f"{KUBE}/resolv.conf": UPSTREAM_RESOLV.encode(),
    }


# ---- kubeconfigs ----------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(server: str, tls: TlsMaterial, user: str) -> bytes:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": _b64(tls.ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(tls.cert_pem),
                                          "client-key-data": _b64(tls.key_pem)}}],
        "contexts": [{"name": "default", "context": {"cluster": "cluster", "user": user}}],
        "current-context": "default",
    }  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _pair(files: dict[str, bytes], stem: str, tls: TlsMaterial) -> None:
    files[f"{PKI}/{stem}.crt"] = tls.cert_pem.encode()
    files[f"{PKI}/{stem}.key"] = tls.key_pem.encode()


# ---- component configs ----------------------------------------------------------------


def kubelet_config(node: NodePlan, *, master: bool) -> str:
    doc: dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubelet 1.35+ refuses cgroup v1 unless told; this host has only v1.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": f"{PKI}/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": f"{PKI}/kubelet.crt",
        "tlsPrivateKeyFile": f"{PKI}/kubelet.key",
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": f"{KUBE}/resolv.conf",
        # pause and CoreDNS come from the node image, not a registry: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The node's disk is the host's (or a small volume): do not evict on its usage.
        "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%",
                         "memory.available": "50Mi"},
        "failSwapOn": False,
        # Also the timeout of the kubelet's heartbeat requests (status, lease): at 1 s they
        # timed out and were retried while the API servers started on a loaded host. The
        # first Ready is reported within 0.1 s anyway (the kubelet's fast status updates
        # for its first two minutes); later changes within 4 s instead of 10.
        "nodeStatusUpdateFrequency": "4s",
        "serializeImagePulls": False,
        "staticPodPath": "",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }  # fmt: skip
    if master:
        doc["registerWithTaints"] = [{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]
    return yaml.safe_dump(doc, sort_keys=False)


def proxy_config(node: NodePlan, flannel: FlannelSettings) -> str:
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": f"{KUBE}/proxy.kubeconfig"},
        "mode": "iptables",  # no IPVS in this kernel
        "clusterCIDR": flannel.network_cidr,
        "hostnameOverride": node.name,
        # Setting nf_conntrack_max fails inside a node (EINVAL): leave conntrack alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _sh(argv: Sequence[str]) -> bytes:
    """A service snippet: ``exec ARGV`` (arguments hold no shell metacharacters)."""
    return ("exec " + " \\\n  ".join(argv) + "\n").encode()


def master_services(
    spec: ClusterSpec, node: NodePlan, masters: Sequence[NodePlan], flannel: FlannelSettings
) -> dict[str, bytes]:
    ip = node.address
    etcd_peers = ",".join(f"{m.name}=https://{m.address}:2380" for m in masters)
    single = len(masters) == 1
    apiserver = [
        "kube-apiserver", f"--advertise-address={ip}", "--bind-address=0.0.0.0", f"--secure-port={API_PORT}",
        "--allow-privileged=true", f"--service-cluster-ip-range={DEFAULT_SERVICE_CIDR}",
        f"--client-ca-file={PKI}/ca.crt", f"--tls-cert-file={PKI}/apiserver.crt",
        f"--tls-private-key-file={PKI}/apiserver.key",
        f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
        f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
        f"--kubelet-certificate-authority={PKI}/ca.crt", "--kubelet-preferred-address-types=InternalIP",
        "--etcd-servers=https://127.0.0.1:2379", f"--etcd-cafile={PKI}/ca.crt",
        f"--etcd-certfile={PKI}/apiserver-etcd-client.crt", f"--etcd-keyfile={PKI}/apiserver-etcd-client.key",
        f"--service-account-key-file={PKI}/sa.pub", f"--service-account-signing-key-file={PKI}/sa.key",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "--enable-admission-plugins=NodeRestriction", "--profiling=false",
        # A CA rotation hands the port over to a second instance while this one restarts.
        "--permit-port-sharing=true",
    ]  # fmt: skip
    apiserver += ["--anonymous-auth=true", "--authorization-mode=Node,RBAC"]
    elect = "false" if single else "true"
    services: dict[str, bytes] = {}
    if spec.tls_disabled:
        # The guide's development mode (Magnum's insecure port): plain HTTP on 8080 with
        # full rights, relayed to the API server with a system:masters certificate.
        services[f"{SERVICES}/insecure-port"] = _sh([
            "socat", f"TCP-LISTEN:{INSECURE_PORT},fork,reuseaddr",
            f"OPENSSL:127.0.0.1:{API_PORT},cert={PKI}/insecure-port.crt,key={PKI}/insecure-port.key,"
            f"cafile={PKI}/ca.crt",
        ])  # fmt: skip
    return services | {
        f"{SERVICES}/etcd": _sh([
            "etcd", f"--name={node.name}", "--data-dir=/var/lib/etcd",
            f"--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379",
            f"--advertise-client-urls=https://{ip}:2379", f"--listen-peer-urls=https://{ip}:2380",
            f"--initial-advertise-peer-urls=https://{ip}:2380", f"--initial-cluster={etcd_peers}",
            f"--initial-cluster-state={'existing' if node.joining else 'new'}", "--client-cert-auth=true", f"--trusted-ca-file={PKI}/ca.crt",
            f"--cert-file={PKI}/etcd.crt", f"--key-file={PKI}/etcd.key", "--peer-client-cert-auth=true",
            f"--peer-trusted-ca-file={PKI}/ca.crt", f"--peer-cert-file={PKI}/etcd.crt",
            f"--peer-key-file={PKI}/etcd.key", "--snapshot-count=10000", "--log-level=warn",
        ]),
        f"{SERVICES}/kube-apiserver": _sh(apiserver),
        # Both start once the API server here is ready: before its RBAC roles exist the
        # controller-manager exits (and was restarted every second, an expensive start each).
        # Its controllers use its own credentials: with a service account each (kubeadm's
        # choice) it created ~40 service accounts and token requests one after the other
        # before the node-IPAM controller (whose pod CIDRs flanneld and so every node's Ready
        # wait for) started: 7-12 s of a 3-master create on a loaded 2-core host, 3 s without.
        f"{SERVICES}/kube-controller-manager": _wait_for_api(LOCAL_API) + _sh([
            "kube-controller-manager", f"--kubeconfig={KUBE}/controller-manager.kubeconfig",
            f"--authentication-kubeconfig={KUBE}/controller-manager.kubeconfig",
            f"--authorization-kubeconfig={KUBE}/controller-manager.kubeconfig",
            "--bind-address=127.0.0.1", f"--leader-elect={elect}", "--use-service-account-credentials=false",
            "--allocate-node-cidrs=true", f"--cluster-cidr={flannel.network_cidr}",
            f"--node-cidr-mask-size={flannel.subnetlen}", f"--service-cluster-ip-range={DEFAULT_SERVICE_CIDR}",
            f"--root-ca-file={PKI}/ca.crt", f"--service-account-private-key-file={PKI}/sa.key",
        ]),
        f"{SERVICES}/kube-scheduler": _wait_for_api(LOCAL_API) + _sh([
            "kube-scheduler", f"--kubeconfig={KUBE}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={KUBE}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={KUBE}/scheduler.kubeconfig",
            "--bind-address=127.0.0.1", f"--leader-elect={elect}",
        ]),
    }  # fmt: skip


def _curl(server: str, path: str, user: str) -> str:
    """A quiet curl of ``server``'s ``path`` as ``user`` (a cert/key pair in PKI), verifying the CA."""
    auth = f"--cert {PKI}/{user}.crt --key {PKI}/{user}.key " if user else ""
    return f"curl -fsS --max-time 2 --cacert {PKI}/ca.crt {auth}{server}{path}"


LOCAL_API = f"https://127.0.0.1:{API_PORT}"


def _wait_for_api(server: str) -> bytes:
    """Start once the API server is ready (kube-proxy: its rights come with the RBAC roles the
    API server creates while it gets ready; the controller-manager exits on start without them)."""
    return gate.wait_for(gate.API_READY, server, f"{PKI}/ca.crt")


def _wait_for_api_serving(server: str) -> bytes:
    """Start once the API server answers HTTP at all: the kubelet retries its registration
    with a doubling delay (up to 7 s), so started earlier it registers seconds after the API
    server is up; started now, it initialises while the API server creates its RBAC roles
    (the Node authorizer, not RBAC, lets it register)."""
    return gate.wait_for(gate.API_SERVING, server, f"{PKI}/ca.crt")


def flanneld_service(node: NodePlan, server: str) -> bytes:
    """flanneld, once its Node has a pod CIDR (flanneld exits without one) and the API server
    lets it read it (its RBAC comes with the add-ons; polled once the API server is ready)."""
    get = _curl(server, f"/api/v1/nodes/{node.name}", "flannel")
    wait = f"until {get} 2>/dev/null | grep -q '\"podCIDR\"'; do sleep 0.25; done\n"
    return _wait_for_api(_gate_server(node, server)) + wait.encode() + _sh([
        "env", f"NODE_NAME={node.name}", "flanneld", "--kube-subnet-mgr",
        f"--kubeconfig-file={KUBE}/flannel.kubeconfig", f"--public-ip={node.address}", "--iface=eth0",
        "--ip-masq", "--net-config-path=/etc/kube-flannel/net-conf.json",
    ])  # fmt: skip


def _gate_server(node: NodePlan, server: str) -> str:
    return LOCAL_API if node.role == "master" else server


def node_services(node: NodePlan, server: str) -> dict[str, bytes]:
    """The services of every node. Its API gate polls ``server``, on a master its own API
    server (the controller-manager and scheduler there talk to it; it is a member of the
    balancer once it serves)."""
    gate_server = _gate_server(node, server)
    return {
        f"{SERVICES}/api-gate": gate.api_gate(gate_server, f"{PKI}/ca.crt"),
        f"{SERVICES}/kubelet": _wait_for_api_serving(gate_server) + _sh([
            "kubelet", f"--config={KUBE}/kubelet.yaml", f"--config-dir={KUBE}/kubelet.conf.d",
            f"--kubeconfig={KUBE}/kubelet.kubeconfig", f"--hostname-override={node.name}",
            f"--node-ip={node.address}",
        ]),
        f"{SERVICES}/kube-proxy": _wait_for_api(gate_server) + _sh(["kube-proxy", f"--config={KUBE}/proxy.yaml"]),
        f"{SERVICES}/flanneld": flanneld_service(node, server),
    }  # fmt: skip


def address_files(
    ctx: StepContext,
    node: NodePlan,
    masters: Sequence[NodePlan],
    server: str,
    flannel: FlannelSettings,
    api_ips: Sequence[str] = (),
) -> dict[str, bytes]:
    """Everything that names an address: certificates, kubeconfigs, services, the marker."""
    spec = ctx.spec
    master = node.role == "master"
    files: dict[str, bytes] = {}
    kubelet_tls = ctx.server_tls(node.name, [node.name], [node.address])
    files[f"{PKI}/ca.crt"] = kubelet_tls.ca_pem.encode()
    _pair(files, "kubelet", kubelet_tls)
    files[f"{KUBE}/kubelet.kubeconfig"] = kubeconfig(
        server, ctx.client_cert(f"system:node:{node.name}", "system:nodes"), f"system:node:{node.name}"
    )
    files[f"{KUBE}/proxy.kubeconfig"] = kubeconfig(server, ctx.client_cert("system:kube-proxy"), "kube-proxy")
    files[f"{KUBE}/kubelet.yaml"] = kubelet_config(node, master=master).encode()
    files[f"{KUBE}/proxy.yaml"] = proxy_config(node, flannel).encode()
    flannel_tls = ctx.client_cert(FLANNEL_USER)
    _pair(files, "flannel", flannel_tls)
    files[f"{KUBE}/flannel.kubeconfig"] = kubeconfig(server, flannel_tls, FLANNEL_USER)
    files.update(node_services(node, server))
    if master:
        local = f"https://127.0.0.1:{API_PORT}"
        names = [node.name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 f"kubernetes.default.svc.{CLUSTER_DOMAIN}"]  # fmt: skip
        ips = list(dict.fromkeys([node.address, KUBERNETES_SERVICE_IP, *api_ips]))
        _pair(files, "apiserver", ctx.server_tls("kube-apiserver", names, ips))
        _pair(files, "etcd", ctx.server_tls(node.name, [node.name], [node.address]))
        _pair(files, "apiserver-etcd-client", ctx.client_cert("kube-apiserver-etcd-client"))
        _pair(
            files,
            "apiserver-kubelet-client",
            ctx.client_cert("kube-apiserver-kubelet-client", "system:masters"),
        )
        sa_key = ctx.derived_key(SA_KEY_PURPOSE)
        files[f"{PKI}/sa.key"] = sa_key.encode()
        files[f"{PKI}/sa.pub"] = public_pem(sa_key)
        if spec.tls_disabled:
            _pair(files, "insecure-port", ctx.client_cert("flotilla-insecure-port", "system:masters"))
        # The controllers run with the controller-manager's own certificate (see
        # master_services: --use-service-account-credentials=false), so it carries the
        # rights of all of them. A master already holds cluster-admin material (etcd's
        # certificates and keys, the service-account signing key, the API server's
        # kubelet-client certificate in system:masters).
        files[f"{KUBE}/controller-manager.kubeconfig"] = kubeconfig(
            local,
            ctx.client_cert("system:kube-controller-manager", "system:masters"),
            "system:kube-controller-manager",
        )
        files[f"{KUBE}/scheduler.kubeconfig"] = kubeconfig(
            local, ctx.client_cert("system:kube-scheduler"), "system:kube-scheduler"
        )
        files.update(master_services(spec, node, masters, flannel))
    files[MARKER] = marker(node)
    return files


def public_pem(private_pem: str) -> bytes:
    """The public half of a PEM private key (the API server reads public keys only)."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def marker(node: NodePlan) -> bytes:
    return f"NODE_NAME={node.name}\nNODE_ROLE={node.role}\nNODE_IP={node.address}\n".encode()


def env_of(text: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


__all__ = ["NODE_DIR"]
