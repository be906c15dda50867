"""The Kubernetes CA rotation's pure parts: its phases in the plan, the trust rewrite of a
node's files (every kubeconfig and ca.crt get the bundle, nothing else changes) and the
handoff instance's certificate (the API server's names, its own CN)."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Mapping, Sequence

import pytest
import yaml
from cryptography import x509
from test_kubernetes_bootstrap import Ctx, _spec

from flotilla.certs import authority
from flotilla.domain import ExecResult, NodeInfo
from flotilla.drivers.base import ClusterSpec
from flotilla.drivers.coe.kubernetes import KubernetesCoe, bootstrap, rotation, rotation_nodes
from flotilla.drivers.coe.kubernetes.bootstrap import KUBE, PKI, NodePlan
from flotilla.drivers.coe.kubernetes.labels import flannel_settings


def test_rotation_plan_is_phased() -> None:
    names = [s.name for s in KubernetesCoe().plan("rotate_ca", _spec())]
    assert names[:3] == [
        "rotation 1/3: trusting old and new CA",
        "rotation 2/3: certificates from the new CA",
        "rotation 3/3: trusting the new CA only",
    ]


def test_with_trust_rewrites_every_kubeconfig_and_ca_crt_only() -> None:
    ctx = Ctx(_spec())
    master = NodePlan("k-master-0", "master", "172.29.1.10")
    files = bootstrap.address_files(ctx, master, [master], "https://172.29.1.10:6443", flannel_settings({}))  # type: ignore[arg-type]
    other_ca, _ = authority.create_ca("new")
    bundle = other_ca + ctx.ca
    out = rotation.with_trust(files, bundle)
    assert out[f"{PKI}/ca.crt"] == bundle.encode()
    kubeconfigs = [p for p in files if p.endswith(".kubeconfig")]
    assert sorted(kubeconfigs) == sorted(p for p in rotation.KUBECONFIGS if p in files)
    assert len(kubeconfigs) == 5
    for path in kubeconfigs:
        before, after = yaml.safe_load(files[path]), yaml.safe_load(out[path])
        ca = base64.b64decode(after["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        assert ca == bundle
        # Only the CA changed: the client certificate and the server stay.
        before["clusters"][0]["cluster"].pop("certificate-authority-data")
        after["clusters"][0]["cluster"].pop("certificate-authority-data")
        assert before == after
    changed = {p for p in files if files[p] != out[p]}
    assert changed == {f"{PKI}/ca.crt", *kubeconfigs}
    # A kubeconfig naming a CA file (not inline data) gets inline data instead.
    by_file = yaml.safe_load(files[f"{KUBE}/kubelet.kubeconfig"])
    by_file["clusters"][0]["cluster"] = {"server": "https://x:6443", "certificate-authority": f"{PKI}/ca.crt"}
    patched = rotation.with_trust({f"{KUBE}/kubelet.kubeconfig": yaml.safe_dump(by_file).encode()}, bundle)
    cluster = yaml.safe_load(patched[f"{KUBE}/kubelet.kubeconfig"])["clusters"][0]["cluster"]
    assert "certificate-authority" not in cluster and cluster["server"] == "https://x:6443"


def test_handoff_certificate_has_the_api_servers_names() -> None:
    ctx = Ctx(_spec())
    master = NodePlan("k-master-0", "master", "172.29.1.10")
    files = bootstrap.address_files(
        ctx, master, [master], "https://172.29.1.10:6443", flannel_settings({}), ["172.29.1.99"]
    )  # type: ignore[arg-type]
    api = files[f"{PKI}/apiserver.crt"]
    handoff = rotation.handoff_cert(ctx, api)  # type: ignore[arg-type]
    a = x509.load_pem_x509_certificate(api)
    h = x509.load_pem_x509_certificate(handoff[f"{PKI}/apiserver-handoff.crt"])
    san = x509.SubjectAlternativeName
    assert set(a.extensions.get_extension_for_class(san).value) == set(
        h.extensions.get_extension_for_class(san).value
    )
    assert h.subject.rfc4514_string() == f"CN={rotation.HANDOFF_CN}"


def test_rotate_script_is_valid_sh() -> None:
    r = subprocess.run(
        ["sh", "-n", "-c", rotation.script().decode()], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["sh", "-c", rotation.script().decode(), "rotate.sh", "bogus"], capture_output=True, text=True,
                       check=False)  # fmt: skip
    assert r.returncode == 2 and "usage" in r.stderr


# ---- the phases against nodes held in memory ---------------------------------------------


class RotCtx(Ctx):
    """A StepContext mid-rotation: certificates from the new CA; the old one trusted until retired."""

    def __init__(self, spec: ClusterSpec, nodes: Nodes) -> None:
        super().__init__(spec)
        self.old_ca, _ = authority.create_ca("old")
        self.ca, self.key = authority.create_ca("new")
        self.retired = False
        self.provider = nodes

    def trust_bundle(self) -> str:
        return self.ca if self.retired else self.ca + self.old_ca

    def retire_previous_ca(self) -> None:
        self.retired = True

    def progress(self, detail: str) -> None:
        pass


class Nodes:
    """Each node's files, and every write, rename and ``rotate.sh`` command in order."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.infos = [NodeInfo(spec.uuid, n, "master", f"172.29.1.{10 + i}", "running")
                      for i, n in enumerate(spec.master.names)]  # fmt: skip
        self.infos += [NodeInfo(spec.uuid, n, "worker", f"172.29.1.{20 + i}", "running")
                       for i, n in enumerate(spec.worker.names)]  # fmt: skip
        self.files: dict[str, dict[str, bytes]] = {n.name: {} for n in self.infos}
        self.log: list[tuple[str, str, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    def list_nodes(self, uuid: str) -> list[NodeInfo]:
        return list(self.infos)

    def put_files(self, node: NodeInfo, files: Mapping[str, bytes]) -> None:
        with self._lock:
            self.files[node.name].update(files)

    def exec(
        self, node: NodeInfo, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60
    ) -> ExecResult:
        held = self.files[node.name]
        with self._lock:
            if argv[:2] == ["sh", "-c"]:  # read
                out = "".join(f"{p} {base64.b64encode(held[p]).decode()}\n" for p in argv[4:] if p in held)
                return ExecResult(0, out, "")
            if argv[0] == "rm":
                for p in argv[2:]:
                    held.pop(p, None)
                return ExecResult(0, "", "")
            assert argv[:2] == ["sh", rotation_nodes.SCRIPT], argv
            commands: list[list[str]] = [[]]
            for a in argv[2:]:  # COMMAND ARGS [-- COMMAND ARGS]...
                commands.append([]) if a == "--" else commands[-1].append(a)
            for command, *args in commands:
                if command == "install":
                    for p in args:
                        held[p] = held.pop(rotation_nodes.staged(p))
                self.log.append((node.name, command, tuple(args)))
            return ExecResult(0, "", "")


def _issuer(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).issuer.rfc4514_string()


def _kubeconfig_ca(data: bytes) -> str:
    return base64.b64decode(
        yaml.safe_load(data)["clusters"][0]["cluster"]["certificate-authority-data"]
    ).decode()


def test_phases_restart_in_the_order_trust_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec()
    nodes = Nodes(spec)
    ctx = RotCtx(spec, nodes)
    masters = [NodePlan(i.name, "master", i.address or "") for i in nodes.infos if i.role == "master"]
    old = Ctx(spec)  # the cluster as created: every file from the old CA
    ctx.old_ca = old.ca
    for info in nodes.infos:
        plan = NodePlan(info.name, info.role, info.address or "")
        nodes.files[info.name] = bootstrap.address_files(
            old, plan, masters, "https://172.29.1.10:6443", flannel_settings({})
        )  # type: ignore[arg-type]
    before = {n: dict(f) for n, f in nodes.files.items()}
    m, w = "k-master-0", "k-node-0"

    def cmds(node: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(c, a) for n, c, a in nodes.log if n == node and c != "install"]

    # Phase 1: trust both; no API server restart (it reloads its client CA), clients and etcd restart.
    rotation.trust_both(ctx)  # type: ignore[arg-type]
    bundle = ctx.ca + ctx.old_ca
    for name, held in nodes.files.items():
        assert held[f"{PKI}/ca.crt"] == bundle.encode()
        assert not [p for p in held if p.endswith(".rotating")]
        for path in rotation.KUBECONFIGS:
            if path in held:
                assert _kubeconfig_ca(held[path]) == bundle
                assert yaml.safe_load(held[path])["users"] == yaml.safe_load(before[name][path])["users"]
        assert held[f"{PKI}/kubelet.crt"] == before[name][f"{PKI}/kubelet.crt"]
    assert sorted(cmds(m)) == sorted([("restart", rotation.MASTER_CLIENTS), ("restart", ("etcd",)),
                                      ("accepts", (rotation.PROBE,))])  # fmt: skip
    assert cmds(m).index(("restart", ("etcd",))) < cmds(m).index(("accepts", (rotation.PROBE,)))
    assert _issuer(nodes.files[m][f"{PKI}/{rotation.PROBE}.crt"]) == "CN=new"
    assert cmds(w) == [("restart", rotation.NODE_SERVICES)]

    # Phase 2: new certificates; the API server handed over before etcd and the kubelets
    # show certificates it must check (and then waited for until they do).
    nodes.log.clear()
    rotation.reissue(ctx)  # type: ignore[arg-type]
    handoff = next(i for i, (n, c, _) in enumerate(nodes.log) if c == "handoff-begin")
    late = [i for i, (_, c, a) in enumerate(nodes.log) if c == "install" and set(a) & set(rotation.LATE)]
    assert len(late) == 3 and min(late) > handoff
    for name, held in nodes.files.items():
        checked = next(i for i, (n, c, _) in enumerate(nodes.log) if n == name and c == "serves-new")
        assert checked > max(i for i in late if nodes.log[i][0] == name)
        assert ("restart", rotation.MASTER_CLIENTS if name == m else rotation.NODE_SERVICES) in cmds(name)
        assert held[f"{PKI}/ca.crt"] == bundle.encode() and held[rotation.NEW_CA] == ctx.ca.encode()
        for path, data in held.items():
            if path.endswith(".crt") and path != f"{PKI}/ca.crt":
                assert _issuer(data) == "CN=new", path
    assert ("serves-new", ("10250", "2379:apiserver-etcd-client")) in cmds(m)
    assert _issuer(nodes.files[m][f"{PKI}/apiserver-handoff.crt"]) == "CN=new"

    # Phase 3: the new CA only; the API server handed back; CoreDNS rolled on the new CA.
    nodes.log.clear()
    rolled: list[str] = []
    monkeypatch.setattr(rotation, "restart_coredns", lambda _ctx, ca: rolled.append(ca))
    rotation.trust_new_only(ctx)  # type: ignore[arg-type]
    assert ctx.retired and rolled == [ctx.ca]
    for held in nodes.files.values():
        assert held[f"{PKI}/ca.crt"] == ctx.ca.encode()
        assert all(_kubeconfig_ca(held[p]) == ctx.ca for p in rotation.KUBECONFIGS if p in held)
        assert f"{PKI}/{rotation.PROBE}.crt" not in held and rotation.NEW_CA not in held
    assert ("handoff-end", ()) in cmds(m) and cmds(m).index(("restart", ("etcd",))) < cmds(m).index(
        ("handoff-end", ())
    )
    assert cmds(w) == [("restart", rotation.NODE_SERVICES)]
