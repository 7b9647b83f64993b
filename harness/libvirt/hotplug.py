"""Live hotplug into a running guest, and what proves it: libvirt's event, its live XML, the guest, the host.

libvirt can return from a live detach ("Device detached successfully") while the guest never released the
device: it only waits a few seconds for the guest's acknowledgement. So a detach here counts only when the
``VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`` event arrived, the live XML lost the device and the guest's own PCI
tree lost it; :class:`DetachOutcome` keeps each of these facts so a suite can name the one that failed.

The guest that answers is :mod:`harness.lab.guest_image`'s: it prints its PCI tree on its serial port,
which libvirt writes to a file that :class:`GuestConsole` reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
from lxml import etree

from harness.errors import HarnessEnvironmentError
from harness.lab.guest_image import PCI_REPORT_MARKER, GuestImage
from harness.libvirt.connection import open_connection
from harness.xml.address import PciAddress
from harness.xml.base import to_xml_string
from harness.xml.domain import Domain, DomainType
from harness.xml.guest import GuestMachine, KernelBoot, SerialLog, q35_root_ports
from harness.xml.hostdev import PciHostdev

SERIAL_LOG_DIR = Path("/var/log/libvirt/qemu")
ANSWERING_GUEST_MEMORY_KIB = 128 * 1024
# libvirt's own wait for a guest's unplug acknowledgement is 5 s; a guest under TCG inside TCG needs more.
REMOVAL_TIMEOUT_S = 60.0
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
def hostdev_xml(source: PciAddress, *, managed: bool, alias: str) -> str:
    """A ``<hostdev>`` for attach/detach with a user alias (``ua-``), so its events can be matched."""
    if not alias.startswith("ua-"):
        raise ValueError(f"libvirt user aliases start with 'ua-', not {alias!r}")
    element = PciHostdev(source=source, managed=managed).to_element()
    etree.SubElement(element, "alias", name=alias)
    return to_xml_string(element)


def live_hostdev_sources(domain: libvirt.virDomain, flags: int = 0) -> list[PciAddress]:
    """Host addresses of the PCI hostdevs in the domain's live (or, with flags, inactive) XML."""
    return [d.source for d in Domain.parse(domain.XMLDesc(flags)).devices if isinstance(d, PciHostdev)]


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
