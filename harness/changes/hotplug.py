"""A device hotplugged into a running guest as a change, and what proves its live detach: libvirt's event,
its live XML, the guest's own PCI tree.

libvirt can return from a live detach ("Device detached successfully") while the guest never released the
device: it only waits a few seconds for the guest's acknowledgement. So a detach here counts only when the
``VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`` event arrived (:mod:`harness.libvirt.events`), the live XML lost the
device and the guest's own PCI tree lost it (the answering guest's console, :mod:`harness.guest`);
:class:`DetachOutcome` keeps each of these facts so a suite can name the one that failed.

:class:`HotpluggedDevice` is journaled before ``attach-device --live``, so an interrupted run's recovery
detaches it from the guest that still runs (and gives a managed device back to its host driver).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.guest.protocol import GuestConsole
from harness.host.drivers import VFIO_DRIVER, current_driver, require_driver, wait_for_driver
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.libvirt.events import open_device_events
from harness.libvirt.guests import lookup_guest
from harness.xml.address import PciAddress
from harness.xml.base import Element, to_xml_string
from harness.xml.domain import device_from_element
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface

# libvirt's own wait for a guest's unplug acknowledgement is 5 s; a guest under TCG inside TCG needs more.
REMOVAL_TIMEOUT_S = 60.0
# The answering guest lists a new device within seconds; TCG inside TCG on a busy machine needs the margin.
GUEST_SEES_WITHIN_S = 60.0
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def new_alias() -> str:
    """A libvirt user alias (``ua-``): the device's name in DEVICE_REMOVED events."""
    return f"ua-hotplug-{uuid.uuid4().hex[:8]}"


def _with_alias(element: Element, alias: str) -> str:
    if not alias.startswith("ua-"):
        raise ValueError(f"libvirt user aliases start with 'ua-', not {alias!r}")
    etree.SubElement(element, "alias", name=alias)
    return to_xml_string(element)


def hostdev_xml(source: PciAddress, *, managed: bool, alias: str) -> str:
    """A ``<hostdev>`` for attach/detach with a user alias (``ua-``), so its events can be matched."""
    return _with_alias(PciHostdev(source=source, managed=managed).to_element(), alias)


def hostdev_interface_xml(source: PciAddress, *, mac: str, alias: str) -> str:
    """An ``<interface type='hostdev' managed='yes'>`` (a VF with its MAC) with a user alias."""
    return _with_alias(HostdevInterface(source=source, mac=mac, managed=True).to_element(), alias)


def live_hostdev_sources(domain: libvirt.virDomain, flags: int = 0) -> list[PciAddress]:
    """Host addresses of the PCI hostdevs and hostdev interfaces in the domain's live (or, with flags,
    inactive) XML. Only the devices are read: the rest of a live definition is libvirt's business."""
    devices = etree.fromstring(domain.XMLDesc(flags).encode()).iterfind("devices/*")
    found = (device_from_element(element) for element in devices)
    return [d.source for d in found if isinstance(d, PciHostdev | HostdevInterface)]


@dataclass(frozen=True)
class DetachOutcome:
    """Each fact a live detach is judged by; :attr:`proved` only when all agree the device is gone."""

    event: str | None  # "removed", "failed" or None (no event within the timeout)
    in_live_xml: bool
    guest_still_sees: list[str]
    seconds: float

    @property
    def proved(self) -> bool:
        return self.event == "removed" and not self.in_live_xml and not self.guest_still_sees

    @property
    def held_by_guest(self) -> bool:
        """libvirt returned success, yet the device never left: the guest did not acknowledge the unplug."""
        return self.event is None and self.in_live_xml

    def explain(self, source: PciAddress, domain: str) -> str:
        if self.held_by_guest:
            return (
                f"libvirt reported {source} detached from {domain} ('Device detached successfully'), but no "
                f"DEVICE_REMOVED event came within {self.seconds:.0f}s and the device is still in the live XML: "
                "the guest did not acknowledge the unplug and still holds it"
            )
        facts = [
            f"event: {self.event or 'none'}",
            f"in live XML: {'yes' if self.in_live_xml else 'no'}",
            f"guest still sees it at: {', '.join(self.guest_still_sees) or 'nowhere'}",
        ]
        return f"live detach of {source} from {domain} not proved ({'; '.join(facts)})"


def pci_id_of(root: HostRoot, address: PciAddress) -> str:
    """``vendor:device`` of a host device as the guest will list it (``8086:10d3``)."""
    vendor, device = (root.read_stripped(pci_path(address, name)) or "" for name in ("vendor", "device"))
    return f"{vendor.removeprefix('0x')}:{device.removeprefix('0x')}"


def _flag_words(flags: int) -> str:
    return " ".join(word for bit, word in ((LIVE, "--live"), (CONFIG, "--config")) if flags & bit)


@dataclass(frozen=True)
class HotpluggedDevice(Change, kind="hotplug"):
    """``virsh attach-device --live``: a host PCI device (a ``<hostdev>`` or an ``<interface
    type='hostdev'>``) added to a running guest. Undone by ``detach-device --live``, which counts only
    with libvirt's DEVICE_REMOVED event and the live XML without it; a no-op when the guest or the device
    is gone. ``console``/``pci_id`` name the guest's serial log and what it lists, when the guest reports."""

    guest: str
    source: PciAddress
    xml: str
    alias: str
    managed: bool
    driver: str | None  # the host driver before: a managed device goes back to it after the detach
    flags: int = LIVE
    console: str = ""
    pci_id: str = ""
    removal_timeout_s: float = REMOVAL_TIMEOUT_S

    @classmethod
    def hostdev(
        cls, root: HostRoot, guest: str, source: PciAddress, *, managed: bool, **options: Any
    ) -> HotpluggedDevice:
        alias = new_alias()
        xml = hostdev_xml(source, managed=managed, alias=alias)
        return cls._of(root, guest, source, xml, alias, managed, options)

    @classmethod
    def interface(
        cls, root: HostRoot, guest: str, source: PciAddress, *, mac: str, **options: Any
    ) -> HotpluggedDevice:
        alias = new_alias()
        xml = hostdev_interface_xml(source, mac=mac, alias=alias)
        return cls._of(root, guest, source, xml, alias, True, options)

    @classmethod
    def _of(
        cls,
        root: HostRoot,
        guest: str,
        source: PciAddress,
        xml: str,
        alias: str,
        managed: bool,
        options: dict[str, Any],
    ) -> HotpluggedDevice:
        console = options.pop("console", None)
        pci_id = pci_id_of(root, source) if console else ""
        return cls(
            guest, source, xml, alias, managed, current_driver(root, source),
            console=str(console or ""), pci_id=pci_id, **options,
        )  # fmt: skip

    @property
    def element(self) -> str:
        return "interface type='hostdev'" if self.xml.lstrip().startswith("<interface") else "hostdev"

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.source,)

    def describe(self) -> str:
        return f"hotplug {self.source} as <{self.element}> into running guest {self.guest}"

    def reproduce(self) -> str:
        xml = " ".join(self.xml.split())
        return f"virsh attach-device {self.guest} device.xml {_flag_words(self.flags)} (device.xml: {xml})"

    def _detach_command(self) -> str:
        return f"virsh detach-device {self.guest} device.xml {_flag_words(self.flags)}"

    def _domain(self, context: ChangeContext) -> libvirt.virDomain:
        domain = lookup_guest(context.connection, self.guest)
        if domain is None or not domain.isActive():
            raise ChangeError(
                f"guest {self.guest} is not running, so nothing can be hotplugged (virsh list --all)"
            )
        return domain

    def apply(self, context: ChangeContext) -> None:
        try:
            self._domain(context).attachDeviceFlags(self.xml, self.flags)
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"attach-device of {self.source} to {self.guest} failed: {exc.get_error_message()} "
                f"(reproduce: {self.reproduce()})"
            ) from None

    def guest_console(self) -> GuestConsole | None:
        return GuestConsole(Path(self.console)) if self.console else None

    def verify(self, context: ChangeContext) -> None:
        domain = self._domain(context)
        live = live_hostdev_sources(domain)
        if self.source not in live:
            raise ChangeError(
                f"after attach-device --live: expected {self.source} in the live XML of {self.guest}, "
                f"found {[str(a) for a in live]} (virsh dumpxml {self.guest})"
            )
        if self.flags & CONFIG and self.source not in live_hostdev_sources(
            domain, libvirt.VIR_DOMAIN_XML_INACTIVE
        ):
            raise ChangeError(
                f"attach-device --config: {self.source} missing from the persistent XML "
                f"(virsh dumpxml --inactive {self.guest})"
            )
        require_driver(
            context.root,
            self.source,
            VFIO_DRIVER,
            after=f"{self.source} attached to {self.guest}",
            look=f"virsh nodedev-dumpxml {self.source.nodedev_name}",
        )
        console = self.guest_console()
        if (
            console is not None
            and console.wait_for(lambda r: bool(r.bdfs_with_id(self.pci_id)), GUEST_SEES_WITHIN_S) is None
        ):
            raise ChangeError(
                f"guest {self.guest} does not list {self.pci_id} ({self.source}) {GUEST_SEES_WITHIN_S:.0f}s after "
                f"attach-device; its PCI tree: {console.latest()}\nconsole tail ({console.path}):\n{console.tail()}"
            )

    def detach(self, context: ChangeContext) -> DetachOutcome:
        """detach-device, then what proves it: libvirt's event, the live XML, the guest's own PCI tree."""
        domain = self._domain(context)
        started = time.monotonic()
        # Listening before the call: libvirt may deliver the event while detach-device still runs.
        with open_device_events(context.connection.getURI()) as events:
            refused = self._press_unplug(domain)
            gone = bool(refused) and self.source not in live_hostdev_sources(domain)
            event = None if gone else events.wait(self.guest, self.alias, self.removal_timeout_s / 2)
            if event is None and not gone and self.source in live_hostdev_sources(domain):
                # pciehp ignores a button press while the slot is still powering on (a detach right after
                # the attach): press once more, as a person would.
                again = self._press_unplug(domain, LIVE)  # --config took effect with the first
                refused = refused and again
                event = events.wait(self.guest, self.alias, self.removal_timeout_s / 2)
        if refused and event != "removed" and self.source in live_hostdev_sources(domain):
            raise ChangeError(
                f"detach-device of {self.source} from {self.guest} failed: {refused}, and no removal followed "
                f"within {self.removal_timeout_s:.0f}s (reproduce: {self._detach_command()})"
            )
        in_live_xml = self.source in live_hostdev_sources(domain)
        still_sees: list[str] = []
        console = self.guest_console()
        if console is not None:
            report = console.wait_for(
                lambda r: not r.bdfs_with_id(self.pci_id), GUEST_SEES_WITHIN_S if event else 0
            )
            latest = console.latest()
            still_sees = [] if report is not None else (latest.bdfs_with_id(self.pci_id) if latest else ["?"])
        return DetachOutcome(event, in_live_xml, still_sees, time.monotonic() - started)

    def _press_unplug(self, domain: libvirt.virDomain, flags: int | None = None) -> str:
        """detach-device; libvirt's refusal ('' when accepted). An unplug already in flight (a run killed
        mid-detach, or the first press) makes QEMU refuse another, yet the first may still complete."""
        try:
            domain.detachDeviceFlags(self.xml, self.flags if flags is None else flags)
        except libvirt.libvirtError as exc:
            return exc.get_error_message() or "refused"
        return ""

    def undo(self, context: ChangeContext) -> str:
        domain = lookup_guest(context.connection, self.guest)
        if domain is None or not domain.isActive():
            return self._forget_config(domain) or (
                f"guest {self.guest} is not running: {self.source} left with it{self._driver_now(context)}"
            )
        if self.source not in live_hostdev_sources(domain):
            return self._forget_config(domain) or (
                f"{self.source} is not in {self.guest} any more: nothing to detach{self._driver_now(context)}"
            )
        outcome = self.detach(context)
        if not outcome.proved:
            raise ChangeError(
                f"{outcome.explain(self.source, self.guest)}; it stays assigned until the guest releases it or "
                f"stops (virsh destroy {self.guest}); reproduce: {self._detach_command()}"
            )
        said = f"detached {self.source} from {self.guest} (DEVICE_REMOVED after {outcome.seconds:.1f}s)"
        if not self.managed:
            return said
        require_driver(
            context.root,
            self.source,
            self.driver,
            after=f"{said}, but {self.source} is not back",
            look=f"virsh nodedev-reattach {self.source.nodedev_name}",
        )
        return f"{said}, back on {self.driver or 'no driver'}"

    def _driver_now(self, context: ChangeContext) -> str:
        """Where the device is now; a managed one is given back by libvirt, maybe a moment after removal."""
        expected = self.driver if self.managed else VFIO_DRIVER
        return f" (host driver {wait_for_driver(context.root, self.source, expected) or 'none'})"

    def _forget_config(self, domain: libvirt.virDomain | None) -> str:
        """--config: take the device out of the persistent definition too; '' when there is nothing to do."""
        if not self.flags & CONFIG or domain is None or not domain.isPersistent():
            return ""
        if self.source not in live_hostdev_sources(domain, libvirt.VIR_DOMAIN_XML_INACTIVE):
            return ""
        try:
            domain.detachDeviceFlags(self.xml, CONFIG)
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"detach-device --config of {self.source} from {self.guest} failed: {exc.get_error_message()}"
            ) from None
        return f"removed {self.source} from the persistent definition of {self.guest}"
