"""The PF's VF table as ``ip -j link`` prints it, and the network changes' records and descriptions."""

from __future__ import annotations

import json

from harness.changes.link_state import LinkState
from harness.changes.networks import DefinedNetwork
from harness.changes.protocol import Change
from harness.host.netdevs import VfLink, netdev_function, parse_vf_links
from harness.host.root import HostRoot
from harness.libvirt.networks import NETWORK_PREFIX, vf_pool
from harness.xml.address import PciAddress
from tests.synthetic_hosts import FIXTURES

INTEL = HostRoot(FIXTURES / "synthetic-intel-iommu-on")

# `ip -j link show enp6s0` in the default lab (igb, 2 VFs), one guest running with MAC and vlan 42 on vf 0.
IP_JSON = json.dumps(
    [
        {
            "ifname": "enp6s0",
            "vfinfo_list": [
                {"vf": 0, "address": "52:54:00:aa:00:01", "vlan_list": [{"vlan": 42}], "spoofchk": True},
                {"vf": 1, "address": "00:00:00:00:00:00", "vlan_list": [{}], "spoofchk": True},
            ],
        }
    ]
)


def test_vf_lines_give_mac_and_vlan_per_vf() -> None:
    assert parse_vf_links(IP_JSON) == {
        0: VfLink(0, "52:54:00:aa:00:01", 42),
        1: VfLink(1, "00:00:00:00:00:00", None),
    }
    assert parse_vf_links(IP_JSON)[0].describe() == "vf 0 MAC 52:54:00:aa:00:01, vlan 42"


def test_a_pf_without_vfs_has_no_vf_lines() -> None:
    assert parse_vf_links(json.dumps([{"ifname": "enp2s0"}])) == {}


def test_link_state_round_trips_through_its_record() -> None:
    change = LinkState("enp6s0", before=False, up=True)
    assert Change.kinds["link_state"].from_record(change.to_record()) == change
    assert change.reproduce() == "ip link set dev enp6s0 up"


def test_a_pool_network_names_each_step_and_its_vfs() -> None:
    vfs = (PciAddress.from_bdf("0000:06:10.0"), PciAddress.from_bdf("0000:06:10.2"))
    pool = DefinedNetwork.of(INTEL, vf_pool(addresses=vfs), autostart=True)
    assert pool.name.startswith(NETWORK_PREFIX)
    assert pool.touches() == vfs
    assert pool.describe() == f"define, start, autostart network {pool.name}"
    assert pool.reproduce().endswith(f"virsh net-start {pool.name}; virsh net-autostart {pool.name}")
    assert Change.kinds["network"].from_record(pool.to_record()) == pool
    by_pf = DefinedNetwork.of(INTEL, vf_pool(pf="enp6s0"), start=False)  # no such interface there
    assert by_pf.touches() == () and '<pf dev="enp6s0"/>' in by_pf.xml.replace("'", '"')
    # A record written before autostart existed still decodes (autostart off).
    old = {key: value for key, value in by_pf.to_record().items() if key != "autostart"}
    assert Change.kinds["network"].from_record(old) == by_pf


def test_a_pool_by_pf_touches_the_pci_function_behind_the_interface() -> None:
    """libvirt hands out the VFs of <pf dev>: the guard has to see that PF, found through sysfs."""
    nic = PciAddress.from_bdf("0000:00:1f.6")
    assert netdev_function(INTEL, "eno1") == nic
    assert netdev_function(INTEL, "nosuch0") is None
    pool = DefinedNetwork.of(INTEL, vf_pool(pf="eno1"))
    assert pool.touches() == (nic,)
    decoded = Change.kinds["network"].from_record(pool.to_record())
    assert decoded == pool and isinstance(decoded.pf_device, PciAddress)
