"""Throwaway guests that take an assigned device: a transient domain with no OS, only firmware.

A guest needs no disk to prove assignment: libvirt detaches a managed hostdev to vfio-pci when the
guest starts, QEMU opens the group and the device, and libvirt gives it back when the guest stops.
"""

from __future__ import annotations

import os
import uuid

import libvirt

from harness.journal import ChangeJournal
from harness.xml.domain import Domain, DomainType
from harness.xml.hostdev import PciHostdev

GUEST_MEMORY_KIB = 128 * 1024
GUEST_PREFIX = "hostdev-harness-"


def choose_virt_type(requested: str, kvm_usable: bool) -> DomainType:
    """``kvm``/``qemu`` as asked; ``auto`` takes KVM only where the KVM probe ran a guest."""
    if requested in ("kvm", "qemu"):
        return "kvm" if requested == "kvm" else "qemu"
    if requested != "auto":
        raise ValueError(f"guest type {requested!r}: expected kvm, qemu or auto")
    return "kvm" if kvm_usable else "qemu"


def guest_with_hostdevs(hostdevs: tuple[PciHostdev, ...], virt_type: DomainType) -> Domain:
    name = f"{GUEST_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return Domain(name=name, memory_kib=GUEST_MEMORY_KIB, virt_type=virt_type, devices=hostdevs)


def start_guest(connection: libvirt.virConnect, guest: Domain, journal: ChangeJournal) -> libvirt.virDomain:
    """Start ``guest`` as a transient domain, journaled so an interrupted run destroys it."""
    journal.begin("guest", guest.name, None)
    return connection.createXML(guest.to_xml(), 0)


def destroy_guest(connection: libvirt.virConnect, name: str) -> None:
    try:
        connection.lookupByName(name).destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
