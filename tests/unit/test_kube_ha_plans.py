"""Kubernetes masters behind the provider's load balancer, on the fake provider: the
balancer has every master as a member from the start, its address is the API endpoint in
every kubeconfig and in every apiserver certificate, etcd is one cluster over all masters
with TLS peers, the controllers elect leaders, and the master count must be odd (etcd
quorum) and at most 7."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import yaml
from cryptography import x509
from test_kubernetes_bootstrap import Ctx as CertCtx

from flotilla.domain import Flavor, NodeInfo
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec
from flotilla.drivers.coe.kubernetes import apilb, bootstrap, steps
from flotilla.drivers.coe.kubernetes.template import validate_template
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.errors import Invalid

PREFIX = "ha-0123abcd"


class Ctx(CertCtx):
    """A StepContext over the fake provider and a real CA."""

    def __init__(self, spec: ClusterSpec, provider: FakeProvider) -> None:
        super().__init__(spec)
        self.provider = provider
        self.outputs: dict[str, object] = {}

    def progress(self, detail: str) -> None:
        pass

    def save_outputs(self, **kw: object) -> None:
        self.outputs.update(kw)

    def load_images(self, node: NodeInfo, argv: Sequence[str]) -> int:
        return 0  # no images recorded (tests/integration/test_cluster_images.py covers loading)


def _spec(masters: int = 3, workers: int = 1, **kw: object) -> ClusterSpec:
    flavor = Flavor("m1.small", 1, 1024)
    return ClusterSpec(
        uuid="0123abcd-u", name="ha", coe="kubernetes", image_ref="img",
        master=NodeGroupSpec("m", "master", masters, flavor, "img", tuple(f"{PREFIX}-master-{i}" for i in range(masters))),
        worker=NodeGroupSpec("w", "worker", workers, flavor, "img", tuple(f"{PREFIX}-node-{i}" for i in range(workers))),
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _files(fake: FakeProvider, node: str) -> dict[str, bytes]:
    files: dict[str, bytes] = fake.nodes[node]["files"]
    return files


def _san_ips(pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def _service(files: dict[str, bytes], name: str) -> str:
    return files[f"{bootstrap.SERVICES}/{name}"].decode()


def test_three_masters_sit_behind_the_providers_load_balancer() -> None:
    fake = FakeProvider()
    spec = _spec()
    ctx = Ctx(spec, fake)
    steps.start_nodes(ctx)  # type: ignore[arg-type]
    lb = fake.find_load_balancer(spec.uuid, f"{PREFIX}-lb-0")
    assert lb is not None and lb.address
    # no node of the driver's own plays the balancer
    assert sorted(fake.nodes) == sorted([*spec.master.names, *spec.worker.names])
    masters = [fake.nodes[m]["address"] for m in spec.master.names]
    (listener,) = fake.load_balancers[lb.name]["spec"].listeners
    assert listener.port == 6443 and listener.members == tuple(masters)
    # made once, with its members: the masters' addresses were reserved before they started
    assert len(fake.load_balancers[lb.name]["applied"]) == 1
    server = f"https://{lb.address}:6443"
    assert steps.endpoint(ctx) == server  # type: ignore[arg-type]
    peers = ",".join(f"{m}=https://{a}:2380" for m, a in zip(spec.master.names, masters, strict=True))
    for name, address in zip(spec.master.names, masters, strict=True):
        files = _files(fake, name)
        assert {lb.address, address, bootstrap.KUBERNETES_SERVICE_IP} <= _san_ips(
            files[f"{bootstrap.PKI}/apiserver.crt"]
        )
        etcd = _service(files, "etcd")
        assert f"--initial-cluster={peers} " in etcd.replace("\\\n  ", " ") + " "
        assert "--peer-client-cert-auth=true" in etcd and f"--listen-peer-urls=https://{address}:2380" in etcd
        assert "--peer-trusted-ca-file=" in etcd and "--peer-cert-file=" in etcd
        assert address in _san_ips(files[f"{bootstrap.PKI}/etcd.crt"])
        assert "--leader-elect=true" in _service(files, "kube-controller-manager")
        assert "--leader-elect=true" in _service(files, "kube-scheduler")
        assert f"--advertise-address={address}" in _service(files, "kube-apiserver")
    for name in [*spec.master.names, *spec.worker.names]:
        kubelet = yaml.safe_load(_files(fake, name)[f"{bootstrap.KUBE}/kubelet.kubeconfig"])
        assert kubelet["clusters"][0]["cluster"]["server"] == server
    # again (a resumed step): nothing changes
    steps.start_nodes(ctx)  # type: ignore[arg-type]
    assert len(fake.load_balancers[lb.name]["applied"]) == 1
    steps.delete_everything(ctx)  # type: ignore[arg-type]
    assert fake.load_balancers == {} and fake.nodes == {}


def test_tls_disabled_balances_the_insecure_port_too() -> None:
    fake = FakeProvider()
    spec = _spec(masters=1, workers=0, master_lb_enabled=True, tls_disabled=True)
    ctx = Ctx(spec, fake)
    steps.start_nodes(ctx)  # type: ignore[arg-type]
    lb = fake.find_load_balancer(spec.uuid, apilb.name(spec))
    assert lb is not None
    listeners = fake.load_balancers[lb.name]["spec"].listeners
    assert [(lst.port, lst.backend_port) for lst in listeners] == [(6443, 6443), (8080, 8080)]
    assert apilb.user_address(ctx, {}) == f"http://{lb.address}:8080"  # type: ignore[arg-type]


def test_single_master_without_balancer_uses_its_own_address() -> None:
    fake = FakeProvider()
    spec = _spec(masters=1, workers=1)
    ctx = Ctx(spec, fake)
    steps.start_nodes(ctx)  # type: ignore[arg-type]
    assert fake.load_balancers == {}
    master = fake.nodes[spec.master.names[0]]["address"]
    assert steps.endpoint(ctx) == f"https://{master}:6443"  # type: ignore[arg-type]
    files = _files(fake, spec.master.names[0])
    assert "--leader-elect=false" in _service(files, "kube-scheduler")


@pytest.mark.parametrize("count", [2, 4, 6])
def test_even_master_counts_are_refused_for_quorum(count: int) -> None:
    with pytest.raises(Invalid) as err:
        validate_template({"master_count": count, "node_count": 1}, built_version="v1.37.2")
    text = str(err.value)
    assert f"master_count {count}" in text and "quorum" in text and "odd" in text
    assert f"{count // 2 + 1} of {count}" in text


@pytest.mark.parametrize("count", [9, 11])
def test_more_than_seven_masters_are_refused(count: int) -> None:
    with pytest.raises(Invalid, match="at most 7 masters"):
        validate_template({"master_count": count, "node_count": 1}, built_version="v1.37.2")


@pytest.mark.parametrize("count", [1, 3, 5, 7])
def test_odd_master_counts_up_to_seven_pass(count: int) -> None:
    validate_template({"master_count": count, "node_count": 1}, built_version="v1.37.2")
