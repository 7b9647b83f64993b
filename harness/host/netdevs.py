"""Network devices of SR-IOV NICs: a PCI function's netdev names, the VFs' MAC and VLAN as their PF reports
them, and a netdev's link state (readers; the link state as a change is :mod:`harness.changes.link_state`).

libvirt sets a VF's MAC and VLAN through its PF (netlink IFLA_VF_MAC / IFLA_VF_VLAN), so that is where a
person looks: ``ip link show <pf>`` prints one ``vf N`` line per VF. ``ip -j`` gives the same as JSON.
libvirt also refuses to configure a VF of a PF that is down ("the PF is not online"): a test that wants
MACs set brings the PF up with ``LinkState`` and puts it back after.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from harness.errors import HostStateError
from harness.host.critical import pci_ancestor
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.xml.address import PciAddress

IFF_UP = 0x1
NO_MAC = "00:00:00:00:00:00"  # what igb reports for a VF whose MAC the PF never set


def netdev_names(root: HostRoot, address: PciAddress) -> tuple[str, ...]:
    """The netdevs a PCI function's driver made (the ``net/`` folder of its sysfs node); none without a driver."""
    return tuple(sorted(root.listdir(pci_path(address, "net"))))


def netdev_function(root: HostRoot, netdev: str) -> PciAddress | None:
    """The PCI function behind a network interface (``/sys/class/net/<netdev>``); None when there is no
    such interface or it is not on PCI."""
    path = f"/sys/class/net/{netdev}"
    bdf = pci_ancestor(root.realpath(path)) if root.exists(path) else None
    return bdf


def vf_index(root: HostRoot, pf: PciAddress, vf: PciAddress) -> int:
    """N of the PF's ``virtfnN`` link that points at ``vf``: the number ``ip link`` shows as ``vf N``."""
    base = pci_path(pf)
    for name in root.listdir(base):
        if name.startswith("virtfn") and root.link_name(f"{base}/{name}") == str(vf):
            return int(name[len("virtfn") :])
    raise HostStateError(f"{vf} is not a VF of {pf} (ls -l {base}/virtfn*)")


@dataclass(frozen=True)
class VfLink:
    """One ``vf N`` line of ``ip link show <pf>``: the MAC and VLAN the PF gives that VF."""

    vf: int
    mac: str
    vlan: int | None

    def describe(self) -> str:
        return f"vf {self.vf} MAC {self.mac}{'' if self.vlan is None else f', vlan {self.vlan}'}"


def reproduce_vf_links(pf_netdev: str) -> str:
    return f"ip link show {pf_netdev}"


def vf_links(pf_netdev: str) -> dict[int, VfLink]:
    """The PF's VF table as the kernel reports it (``ip -j link show <pf>``, ``vfinfo_list``)."""
    try:
        done = subprocess.run(
            ["ip", "-j", "link", "show", "dev", pf_netdev], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise HostStateError(f"`ip` did not run: {exc} (iproute2 is needed to read VF MACs)") from None
    if done.returncode != 0:
        raise HostStateError(f"`ip -j link show {pf_netdev}` exited {done.returncode}: {done.stderr.strip()}")
    return parse_vf_links(done.stdout)


def parse_vf_links(ip_json: str) -> dict[int, VfLink]:
    """``vfinfo_list`` of ``ip -j link show <pf>``; a VF without a VLAN has ``vlan_list: [{}]``."""
    links: dict[int, VfLink] = {}
    for entry in json.loads(ip_json)[0].get("vfinfo_list", []):
        vlans = [v["vlan"] for v in entry.get("vlan_list", []) if v.get("vlan")]
        links[int(entry["vf"])] = VfLink(int(entry["vf"]), entry["address"], vlans[0] if vlans else None)
    return links


def link_is_up(root: HostRoot, netdev: str) -> bool:
    flags = root.read_stripped(f"/sys/class/net/{netdev}/flags")
    if flags is None:
        raise HostStateError(f"no netdev {netdev} (ip link show {netdev})")
    return bool(int(flags, 16) & IFF_UP)
