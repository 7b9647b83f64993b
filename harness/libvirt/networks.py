"""libvirt networks the harness makes (VF pools: ``<forward mode='hostdev'>``): their XML, lookups, and what a
running pool says about itself: through its network ports (``virsh net-port-list`` / ``net-port-dumpxml``),
which VF each guest holds. The networks as changes are :mod:`harness.changes.networks`."""

from __future__ import annotations

import os
import uuid

import libvirt
from lxml import etree

from harness.errors import HostStateError
from harness.xml.address import PciAddress
from harness.xml.network import Forward, Network

NETWORK_PREFIX = "hostdev-harness-net-"


def lookup_network(connection: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    try:
        return connection.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
            raise HostStateError(f"looking up network {name} failed: {exc.get_error_message()}") from None
        return None


def vf_pool(*, pf: str | None = None, addresses: tuple[PciAddress, ...] = ()) -> Network:
    """A hostdev network (managed VFs) by PF netdev name or by VF addresses, with a name of its own."""
    name = f"{NETWORK_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return Network(name=name, forward=Forward(mode="hostdev", managed=True, pf=pf, addresses=addresses))


def pool_ports(network: libvirt.virNetwork) -> dict[str, PciAddress]:
    """Guest name -> the VF its port plugs (``virsh net-port-dumpxml``): which VFs of the pool are in use."""
    held: dict[str, PciAddress] = {}
    for port in network.listAllPorts(0):
        document = etree.fromstring(port.XMLDesc(0).encode())
        owner, address = document.findtext("owner/name"), document.find("plug[@type='hostdev-pci']/address")
        if owner is not None and address is not None:
            held[owner] = PciAddress.from_element(address)
    return held
