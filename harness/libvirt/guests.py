"""Throwaway guests that take an assigned device, as libvirt sees them: their XML (domains with no OS, only
firmware), lookups, ``virsh destroy``, the hostdevs a definition assigns and the PCI tree QEMU reports.

The guests as changes (journaled, undone) are :mod:`harness.changes.guests`.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import libvirt

from harness.errors import HostStateError
from harness.xml.address import PciAddress
from harness.xml.base import parse_document
from harness.xml.domain import Device, Domain, DomainType

GUEST_MEMORY_KIB = 128 * 1024
GUEST_PREFIX = "hostdev-harness-"


def choose_virt_type(requested: str, kvm_usable: bool) -> DomainType:
    """``kvm``/``qemu`` as asked; ``auto`` takes KVM only where the KVM probe ran a guest."""
    if requested in ("kvm", "qemu"):
        return "kvm" if requested == "kvm" else "qemu"
    if requested != "auto":
        raise ValueError(f"guest type {requested!r}: expected kvm, qemu or auto")
    return "kvm" if kvm_usable else "qemu"


def guest_with_hostdevs(hostdevs: tuple[Device, ...], virt_type: DomainType) -> Domain:
    """A no-OS guest with these devices (hostdevs, VF interfaces, pool interfaces) and a name of its own."""
    name = f"{GUEST_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return Domain(name=name, memory_kib=GUEST_MEMORY_KIB, virt_type=virt_type, devices=hostdevs)


def lookup_guest(connection: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return connection.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise HostStateError(f"looking up guest {name} failed: {exc.get_error_message()}") from None
        return None


def destroy_guest(connection: libvirt.virConnect, name: str) -> bool:
    """Destroy ``name`` if it runs; True when it was running."""
    domain = lookup_guest(connection, name)
    if domain is None or not domain.isActive():
        return False
    try:
        domain.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise HostStateError(
                f"virsh destroy {name} failed: {exc.get_error_message()} (reproduce: virsh destroy {name})"
            ) from None
    return True


def hostdev_sources(xml: str) -> tuple[PciAddress, ...]:
    """The host PCI devices a guest's XML assigns (``<hostdev>`` and ``<interface type='hostdev'>``): the
    guard must permit each before the guest starts. Read from the document, not the models, so that XML the
    models refuse (a test of libvirt's own refusal) is still guarded. A pool interface's VF is libvirt's
    choice, not listed."""
    document = parse_document(xml)
    paths = (
        "devices/hostdev[@type='pci']/source/address",
        "devices/interface[@type='hostdev']/source/address",
    )
    return tuple(PciAddress.from_element(address) for path in paths for address in document.iterfind(path))


def qemu_pci_devices(domain: libvirt.virDomain) -> list[dict[str, Any]]:
    """The guest's own PCI tree as its QEMU reports it (QMP ``query-pci`` through libvirt's monitor)."""
    import libvirt_qemu

    reply = json.loads(libvirt_qemu.qemuMonitorCommand(domain, '{"execute":"query-pci"}', 0))
    found: list[dict[str, Any]] = []

    def walk(devices: list[dict[str, Any]]) -> None:
        for device in devices:
            found.append(device)
            walk(device.get("pci_bridge", {}).get("devices", []))

    for bus in reply["return"]:
        walk(bus["devices"])
    return found
