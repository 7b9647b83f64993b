"""Guests as changes: a started guest (``TransientGuest``), a defined one (``DefinedGuest``) and one made by
virt-install, each journaled before libvirt hears of it, so an interrupted run destroys (and undefines) it.

A guest needs no disk to prove assignment: libvirt detaches a managed hostdev to vfio-pci when the
guest starts, QEMU opens the group and the device, and libvirt gives it back when the guest stops.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import libvirt

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.libvirt.guests import GUEST_MEMORY_KIB, destroy_guest, hostdev_sources, lookup_guest
from harness.xml.address import PciAddress
from harness.xml.domain import Domain


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
