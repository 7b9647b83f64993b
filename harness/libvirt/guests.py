"""Throwaway guests that take an assigned device: domains with no OS, only firmware.

A guest needs no disk to prove assignment: libvirt detaches a managed hostdev to vfio-pci when the
guest starts, QEMU opens the group and the device, and libvirt gives it back when the guest stops.
A started guest (``TransientGuest``) and a defined one (``DefinedGuest``) are changes: journaled before
libvirt hears of them, so an interrupted run destroys (and undefines) them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import libvirt

from harness.changes import Change, ChangeContext, ChangeError
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
            raise ChangeError(f"looking up guest {name} failed: {exc.get_error_message()}") from None
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
            raise ChangeError(
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


class GuestChange(Change):
    """A change that is a guest: it can hand over its libvirt domain."""

    name: str

    def domain(self, context: ChangeContext) -> libvirt.virDomain:
        domain = lookup_guest(context.connection, self.name)
        if domain is None:
            raise ChangeError(f"guest {self.name} is gone (virsh list --all)")
        return domain


@dataclass(frozen=True)
class TransientGuest(GuestChange, kind="guest"):
    """``virsh create``: a transient guest; undone by destroying it (managed hostdevs go back then)."""

    name: str
    xml: str

    @classmethod
    def of(cls, guest: Domain) -> TransientGuest:
        return cls(guest.name, guest.to_xml())

    def touches(self) -> tuple[PciAddress, ...]:
        return hostdev_sources(self.xml)

    def describe(self) -> str:
        return f"start transient guest {self.name}"

    def reproduce(self) -> str:
        return "virsh create guest.xml"

    def apply(self, context: ChangeContext) -> None:
        try:
            context.connection.createXML(self.xml, 0)
        except libvirt.libvirtError as exc:
            raise GuestStartError(self.name, exc) from None

    def verify(self, context: ChangeContext) -> None:
        domain = lookup_guest(context.connection, self.name)
        if domain is None or not domain.isActive():
            raise ChangeError(f"guest {self.name} is not running after virsh create (virsh list --all)")

    def undo(self, context: ChangeContext) -> str:
        return (
            f"destroyed guest {self.name}"
            if destroy_guest(context.connection, self.name)
            else (f"guest {self.name} is gone already")
        )


@dataclass(frozen=True)
class DefinedGuest(GuestChange, kind="defined_guest"):
    """``virsh define`` (the ``virsh edit`` path): a persistent guest; undone by destroy and undefine.
    ``validate``: ``virsh define --validate``, libvirt checks the XML against its schema first."""

    name: str
    xml: str
    validate: bool = False

    @classmethod
    def of(cls, guest: Domain, *, validate: bool = False) -> DefinedGuest:
        return cls(guest.name, guest.to_xml(), validate)

    def touches(self) -> tuple[PciAddress, ...]:
        return hostdev_sources(self.xml)

    def describe(self) -> str:
        return f"define guest {self.name}"

    def reproduce(self) -> str:
        return f"virsh define{' --validate' if self.validate else ''} guest.xml"

    def apply(self, context: ChangeContext) -> None:
        flags = libvirt.VIR_DOMAIN_DEFINE_VALIDATE if self.validate else 0
        try:
            context.connection.defineXMLFlags(self.xml, flags)
        except libvirt.libvirtError as exc:
            raise GuestStartError(self.name, exc, step="define", reproduce=self.reproduce()) from None

    def verify(self, context: ChangeContext) -> None:
        domain = lookup_guest(context.connection, self.name)
        if domain is None or not domain.isPersistent():
            raise ChangeError(f"guest {self.name} is not defined after virsh define (virsh list --all)")

    def undo(self, context: ChangeContext) -> str:
        return remove_guest(context.connection, self.name)


def remove_guest(connection: libvirt.virConnect, name: str) -> str:
    """``virsh destroy`` (if it runs) and ``virsh undefine``; says what it did."""
    destroyed = destroy_guest(connection, name)
    domain = lookup_guest(connection, name)
    if domain is None:
        return f"guest {name} is gone {'now' if destroyed else 'already'}"
    try:
        domain.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise ChangeError(f"virsh undefine {name} failed: {exc.get_error_message()}") from None
    return f"{'destroyed and ' if destroyed else ''}undefined guest {name}"


@dataclass(frozen=True)
class VirtInstalledGuest(GuestChange, kind="virt_install_guest"):
    """The guide's other way in: ``virt-install --host-device pci_...`` as a real client of libvirt
    defines and starts a guest; undone by destroy and undefine."""

    name: str
    uri: str
    device: PciAddress
    virt_type: str

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def argv(self) -> list[str]:
        return [
            "virt-install", "--connect", self.uri, "--name", self.name, "--memory", str(GUEST_MEMORY_KIB // 1024),
            "--vcpus", "1", "--virt-type", self.virt_type, "--osinfo", "generic", "--import", "--disk", "none",
            "--network", "none", "--graphics", "none", "--noautoconsole", "--host-device", self.device.nodedev_name,
        ]  # fmt: skip

    def describe(self) -> str:
        return f"virt-install guest {self.name} with {self.device}"

    def reproduce(self) -> str:
        return " ".join(self.argv())

    def apply(self, context: ChangeContext) -> None:
        try:
            done = subprocess.run(self.argv(), capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ChangeError(f"virt-install did not run: {exc} (reproduce: {self.reproduce()})") from None
        if done.returncode != 0:
            said = " ".join((done.stderr or done.stdout).split())[-600:]
            raise ChangeError(
                f"virt-install exited {done.returncode}: {said} (reproduce: {self.reproduce()})"
            )

    def verify(self, context: ChangeContext) -> None:
        domain = lookup_guest(context.connection, self.name)
        if domain is None or not domain.isActive() or not domain.isPersistent():
            raise ChangeError(f"virt-install left no running, defined guest {self.name} (virsh list --all)")

    def undo(self, context: ChangeContext) -> str:
        return remove_guest(context.connection, self.name)


class GuestStartError(ChangeError):
    """libvirt refused to start (or define) a guest; keeps libvirt's error code and message for the suites."""

    def __init__(
        self,
        name: str,
        error: libvirt.libvirtError,
        *,
        step: str = "start",
        reproduce: str = "virsh create guest.xml",
    ) -> None:
        self.code = error.get_error_code()
        self.libvirt_message = error.get_error_message() or ""
        super().__init__(f"guest {name} did not {step}: {self.libvirt_message} (reproduce: {reproduce})")
