"""Live hotplug into a running guest, and what proves it: libvirt's event, its live XML, the guest, the host.

libvirt can return from a live detach ("Device detached successfully") while the guest never released the
device: it only waits a few seconds for the guest's acknowledgement. So a detach here counts only when the
``VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`` event arrived, the live XML lost the device and the guest's own PCI
tree lost it; :class:`DetachOutcome` keeps each of these facts so a suite can name the one that failed.

The guest that answers is :mod:`harness.lab.guest_image`'s: it prints its PCI tree on its serial port,
which libvirt writes to a file that :class:`GuestConsole` reads.

A live-attached device is a change (:class:`HotpluggedDevice`): journaled before ``attach-device --live``,
so an interrupted run's recovery detaches it from the guest that still runs (and gives a managed device
back to its host driver). :func:`host_unplug_report` says what a host-side removal of an assigned device
did to the guest, libvirt and the journal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from harness.changes import Change, ChangeContext, ChangeError, decode
from harness.devices import VFIO_DRIVER, current_driver, require_driver, wait_for_driver
from harness.errors import HarnessEnvironmentError
from harness.host.kernel import read_kernel_log
from harness.host.root import HostRoot
from harness.journal import ChangeJournal
from harness.lab.guest_image import PCI_REPORT_MARKER, GuestImage
from harness.libvirt.connection import open_connection
from harness.libvirt.guests import lookup_guest
from harness.xml.address import PciAddress
from harness.xml.base import Element, to_xml_string
from harness.xml.domain import Domain, DomainType, device_from_element
from harness.xml.guest import GuestMachine, KernelBoot, SerialLog, q35_root_ports
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface

SERIAL_LOG_DIR = Path("/var/log/libvirt/qemu")
ANSWERING_GUEST_MEMORY_KIB = 128 * 1024
# libvirt's own wait for a guest's unplug acknowledgement is 5 s; a guest under TCG inside TCG needs more.
REMOVAL_TIMEOUT_S = 60.0
# The answering guest lists a new device within seconds; TCG inside TCG on a busy machine needs the margin.
GUEST_SEES_WITHIN_S = 60.0
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_REPORT = re.compile(
    rf"{PCI_REPORT_MARKER} (\d+) ([0-9.]+)((?: [0-9a-f:.]+=[0-9a-f]{{4}}:[0-9a-f]{{4}})*)\s*$"
)


class HotplugError(HarnessEnvironmentError):
    """The hotplug machinery itself failed (no event loop, no guest console); the message says where."""


@dataclass(frozen=True)
class GuestPciReport:
    """One look of the guest at its own ``/sys/bus/pci/devices``: BDF -> ``vendor:device``."""

    seq: int
    uptime_s: float
    devices: tuple[tuple[str, str], ...]

    def bdfs_with_id(self, pci_id: str) -> list[str]:
        return [bdf for bdf, device_id in self.devices if device_id == pci_id]

    def __str__(self) -> str:
        return " ".join(f"{bdf}={device_id}" for bdf, device_id in self.devices)


def parse_reports(text: str) -> list[GuestPciReport]:
    """Every complete report line in a console log (kernel messages between them are skipped)."""
    reports = []
    # A line without its newline may still be being written by the guest.
    complete = text if text.endswith("\n") else text.rpartition("\n")[0]
    for line in complete.splitlines():
        start = line.find(PCI_REPORT_MARKER)
        match = _REPORT.match(line[start:]) if start >= 0 else None
        if match:
            pairs = tuple(tuple(item.split("=", 1)) for item in match.group(3).split())
            reports.append(GuestPciReport(int(match.group(1)), float(match.group(2)), pairs))
    return reports


class GuestConsole:
    """The answering guest's serial log, as libvirt's ``<serial type='file'>`` writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""

    def latest(self) -> GuestPciReport | None:
        reports = parse_reports(self.text())
        return reports[-1] if reports else None

    def wait_for(
        self, predicate: Callable[[GuestPciReport], bool], timeout: float, interval: float = 0.25
    ) -> GuestPciReport | None:
        """The newest report once it satisfies ``predicate``; None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.latest()
            if report is not None and predicate(report):
                return report
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-lines:]) or f"({self.path} is empty)"


# --- libvirt's device events ---------------------------------------------------------------------
_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """libvirt's default event loop, run by one daemon thread; connections opened after this get events."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        if libvirt.virEventRegisterDefaultImpl() != 0:
            raise HotplugError("libvirt's default event loop could not be registered")

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


@dataclass
class DeviceEvents:
    """A connection that records ``DEVICE_REMOVED`` / ``DEVICE_REMOVAL_FAILED`` for every domain."""

    connection: libvirt.virConnect
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (domain, alias, "removed"|"failed")
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _callbacks: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, uri: str) -> DeviceEvents:
        _ensure_event_loop()
        events = cls(open_connection(uri))
        for event_id, kind in (
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, "removed"),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, "failed"),
        ):
            events._callbacks.append(
                events.connection.domainEventRegisterAny(None, event_id, events._record, kind)
            )
        return events

    def _record(
        self, _connection: libvirt.virConnect, domain: libvirt.virDomain, alias: str, kind: str
    ) -> None:
        with self._condition:
            self.seen.append((domain.name(), alias, kind))
            self._condition.notify_all()

    def wait(self, domain: str, alias: str, timeout: float) -> str | None:
        """``removed`` or ``failed`` once libvirt said so for ``alias`` of ``domain``; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for name, seen_alias, kind in self.seen:
                    if (name, seen_alias) == (domain, alias):
                        return kind
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def close(self) -> None:
        for callback in self._callbacks:
            with contextlib.suppress(libvirt.libvirtError):
                self.connection.domainEventDeregisterAny(callback)
        self.connection.close()


# --- the devices ---------------------------------------------------------------------------------
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


def pci_id_of(root: HostRoot, address: PciAddress | str) -> str:
    """``vendor:device`` of a host device as the guest will list it (``8086:10d3``)."""
    base = f"/sys/bus/pci/devices/{address}"
    vendor, device = (root.read_stripped(f"{base}/{name}") or "" for name in ("vendor", "device"))
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


# --- a device removed from the host while a guest holds it --------------------------------------
_DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


@dataclass(frozen=True)
class HostUnplugReport:
    """What a host-side removal of an assigned device left: the guest, libvirt, sysfs, kernel, journal."""

    source: PciAddress
    guest: str
    guest_state: str  # "running", "shut off", ... or "gone"
    in_live_xml: bool | None  # None: no running guest to ask
    nodedev_listed: bool
    in_sysfs: bool
    host_driver: str | None
    kernel_messages: tuple[str, ...]  # the host kernel's last lines about the device
    pending: tuple[str, ...]  # journal entries that touch the device or the guest

    @property
    def removed_from_host(self) -> bool:
        return not self.in_sysfs and not self.nodedev_listed

    @property
    def still_assigned(self) -> bool:
        return bool(self.in_live_xml)

    @property
    def removal_waits_for_user(self) -> bool:
        """The kernel unbound the driver link but vfio-pci's remove waits: the guest's QEMU still holds it
        (vfio-pci relays the request to that QEMU every 10 s until it lets go)."""
        relayed = any("Relaying device request" in line for line in self.kernel_messages)
        return self.in_sysfs and self.host_driver is None and relayed

    def explain(self) -> str:
        lines = [
            f"host-side removal of {self.source} (assigned to {self.guest}):",
            f"  guest {self.guest}: {self.guest_state}"
            + ("" if self.in_live_xml is None else f"; {self.source} {'still' if self.in_live_xml else 'no longer'} "
               "in its live XML"),
            f"  host: {'still in' if self.in_sysfs else 'gone from'} sysfs"
            + (f" (driver {self.host_driver or 'none'})" if self.in_sysfs else "")
            + f"; libvirt nodedev {self.source.nodedev_name} {'listed' if self.nodedev_listed else 'not listed'}",
            "  journal: " + ("; ".join(self.pending) or "nothing pending for it"),
        ]  # fmt: skip
        if self.removal_waits_for_user:
            lines.insert(1, (
                f"  the removal has not completed: vfio-pci waits for {self.guest}'s QEMU to release the device "
                "(a guest that does not acknowledge the unplug keeps it until it stops)"
            ))  # fmt: skip
        if self.kernel_messages:
            lines.append("  kernel: " + " | ".join(self.kernel_messages))
        lines.append(
            f"  look: virsh domstate {self.guest} --reason; virsh dumpxml {self.guest}; "
            f"virsh nodedev-list --cap pci; dmesg | grep {self.source}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.bdf, "guest": self.guest, "guest_state": self.guest_state,
            "in_live_xml": self.in_live_xml, "nodedev_listed": self.nodedev_listed, "in_sysfs": self.in_sysfs,
            "host_driver": self.host_driver, "kernel_messages": list(self.kernel_messages),
            "pending": list(self.pending), "removal_waits_for_user": self.removal_waits_for_user,
            "explain": self.explain(),
        }  # fmt: skip


def _guest_state(domain: libvirt.virDomain | None) -> str:
    if domain is None:
        return "gone"
    state, reason = domain.state()
    return f"{_DOMAIN_STATES.get(state, str(state))} (reason {reason})"


def host_unplug_report(
    context: ChangeContext, journal: ChangeJournal, source: PciAddress, guest: str, kernel_lines: int = 6
) -> HostUnplugReport:
    """Where each party stands after ``source`` was pulled from the host under ``guest``: reads only."""
    domain = lookup_guest(context.connection, guest)
    running = domain is not None and domain.isActive()
    pending = tuple(
        f"{entry.kind} by {entry.owner} ({'alive' if entry.owner.is_alive() else 'gone'}): {decode(entry).describe()}"
        for entry in journal.pending()
        if source.bdf in json.dumps(entry.change) or guest in json.dumps(entry.change)
    )
    kernel = [line for line in read_kernel_log(context.root) if source.bdf in line]
    return HostUnplugReport(
        source=source,
        guest=guest,
        guest_state=_guest_state(domain),
        in_live_xml=source in live_hostdev_sources(domain) if running and domain is not None else None,
        nodedev_listed=source.nodedev_name in context.connection.listDevices("pci", 0),
        in_sysfs=context.root.exists(f"/sys/bus/pci/devices/{source}"),
        host_driver=current_driver(context.root, source),
        kernel_messages=tuple(kernel[-kernel_lines:]),
        pending=pending,
    )


# --- the answering guest -------------------------------------------------------------------------
@dataclass
class AnsweringGuest:
    """A running guest with the reporting initramfs; ``boot_s`` is filled by :meth:`wait_booted`."""

    domain: libvirt.virDomain
    machine: GuestMachine
    console: GuestConsole
    started_at: float  # time.time() when libvirt was asked to start it
    boot_s: float | None = None

    @property
    def name(self) -> str:
        return self.machine.name

    def wait_booted(self, timeout: float) -> GuestPciReport:
        report = self.console.wait_for(lambda _report: True, timeout)
        if report is None:
            raise HotplugError(
                f"guest {self.name} printed no PCI report within {timeout:.0f}s of its start "
                f"(console {self.console.path}):\n{self.console.tail()}"
            )
        if self.boot_s is None:
            # The log was last written by the first report as long as no second one came: its mtime is
            # when the guest answered, even if nobody looked until much later (the boot overlaps other tests).
            written = self.console.path.stat().st_mtime if report.seq == 1 else time.time()
            self.boot_s = round(written - self.started_at, 1)
        return report


def answering_guest_machine(
    image: GuestImage, name: str, virt_type: DomainType, *, free_root_ports: int = 4
) -> GuestMachine:
    """A q35 guest with ``free_root_ports`` empty pcie-root-ports for hotplug and its console on a file."""
    controllers = q35_root_ports(free_root_ports)
    return GuestMachine(
        domain=Domain(name=name, memory_kib=ANSWERING_GUEST_MEMORY_KIB, virt_type=virt_type),
        machine="q35",
        boot=KernelBoot(str(image.kernel), str(image.initramfs), image.cmdline),
        serial=SerialLog(str(SERIAL_LOG_DIR / f"{name}.serial.log")),
        controllers=controllers,
    )


def fresh_serial_log(machine: GuestMachine) -> None:
    """Make the serial log's directory and remove an old log, so reports start with this guest's boot."""
    if machine.serial is not None:
        Path(machine.serial.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(machine.serial.path)


@contextlib.contextmanager
def open_device_events(uri: str) -> Iterator[DeviceEvents]:
    events = DeviceEvents.open(uri)
    try:
        yield events
    finally:
        events.close()


def qemu_pid(name: str) -> int | None:
    """The QEMU process of a running guest, from libvirt's pid file (local libvirtd only)."""
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def open_fd_count(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def vfio_nodes() -> list[str]:
    """Entries of /dev/vfio: one per IOMMU group bound to vfio-pci, plus the container node."""
    try:
        return sorted(os.listdir("/dev/vfio"))
    except OSError:
        return []
