"""The local provider's host policies as data: which devices nodes get, which iptables
rules a network gets, and how a full Docker volume turns into health."""

from __future__ import annotations

from flotilla.conductor.health import with_full_volumes
from flotilla.domain import NodeSpec, VolumeUsage
from flotilla.drivers.base import Observation
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.drivers.providers.local.devices import NODE_DEVICES, allowed, deny_rules, wrapper_allowlist
from flotilla.drivers.providers.local.firewall import NetworkRules

GIB = 1024**3


def test_nodes_get_no_disk_no_loop_no_memory_but_what_they_need() -> None:
    assert not allowed("b", 254, 0) and not allowed("b", 7, 0) and not allowed("b", 8, 1)
    assert not allowed("c", 1, 1) and not allowed("c", 10, 237) and not allowed("c", 21, 0)
    for kind, major, minor in (("c", 1, 3), ("c", 1, 11), ("c", 10, 200), ("c", 10, 229), ("c", 136, 5)):
        assert allowed(kind, major, minor), (kind, major, minor)
    rules = deny_rules()
    assert rules[0] == "b *:* rw"  # every block device; mknod ("m") stays for inner runc defaults
    assert "c 1:1 rw" in rules and "c 10:237 rw" in rules and "c 4:* rw" in rules
    assert not any(r in rules for r in ("c 1:3 rw", "c 1:11 rw", "c 10:200 rw", "c 136:* rw"))
    assert all(r.endswith(" rw") for r in rules)
    assert '["c", 10, 200]' in wrapper_allowlist() and len(NODE_DEVICES) > 10


def test_network_rules_isolate_and_routed_opens_the_bridge_only() -> None:
    net = NetworkRules("e1", "c1", "c1-net", "fltabc", "172.29.3.0/24")
    fwd = net.chain_rules("iptables", "FLOTILLA-FORWARD")
    assert fwd[0][:8] == ["-i", "fltabc", "-o", "fltabc", "-s", "172.29.3.0/24", "-d", "172.29.3.0/24"]
    assert fwd[0][-2:] == ["-j", "ACCEPT"] and [r[-1] for r in fwd] == ["ACCEPT", "DROP", "DROP"]
    assert all(net.tag in r for r in fwd) and net.tag == "flotilla engine=e1 cluster=c1 net=c1-net"
    routed = NetworkRules("e1", "c1", "c1-net", "fltabc", "172.29.3.0/24", routed=True)
    assert routed.chain_rules("iptables", "FLOTILLA-FORWARD")[0][:4] == ["-i", "fltabc", "-o", "fltabc"]
    assert "-s" not in routed.chain_rules("iptables", "FLOTILLA-FORWARD")[0]
    inp = net.chain_rules("iptables", "FLOTILLA-INPUT")
    assert [r[-1] for r in inp] == ["RETURN", "DROP"] and "ESTABLISHED,RELATED" in inp[0]


def test_a_full_volume_makes_the_cluster_unhealthy_with_the_reason() -> None:
    fake = FakeProvider()
    spec = NodeSpec(cluster_uuid="c1", name="n0", role="master", image_ref="i", network="net", cpus=1,
                    memory_mb=64, command=["x"], volume_gb=1)  # fmt: skip
    fake.ensure_node(spec)
    (usage,) = fake.volume_usage("c1")
    assert not usage.full and fake.max_volume_gb() is None
    fake.volume_free["n0"] = 10 * 1024**2
    (usage,) = fake.volume_usage(None)
    assert usage.full and usage.describe() == "docker volume full: 10 MiB free of 1024 MiB"
    healthy = Observation("HEALTHY", {"n0": "ok"})
    obs = with_full_volumes(healthy, [usage])
    assert obs.health == "UNHEALTHY" and obs.reasons == {"n0": usage.describe()}
    assert obs.unhealthy_nodes == ()  # not auto-healed: replacing the node would drop its data
    assert with_full_volumes(healthy, []) is healthy
    assert not VolumeUsage("c", "n", 100 * GIB, 3 * GIB).full and VolumeUsage("c", "n", 100 * GIB, GIB).full
