"""The Kubernetes CA rotation's pure parts: its phases in the plan, the trust rewrite of a
node's files (every kubeconfig and ca.crt get the bundle, nothing else changes) and the
handoff instance's certificate (the API server's names, its own CN)."""

from __future__ import annotations

import base64
import subprocess

import yaml
from cryptography import x509
from test_kubernetes_bootstrap import Ctx, _spec

from flotilla.certs import authority
from flotilla.drivers.coe.kubernetes import KubernetesCoe, bootstrap, rotation
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
