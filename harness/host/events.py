"""PCI uevents seen through pyudev: the kernel's own word that a driver was unbound or bound."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

import pyudev

from harness.xml.address import PciAddress


@dataclass(frozen=True)
class PciEvent:
    action: str  # add, remove, bind, unbind, change
    address: str
    driver: str | None


class PciEventWatcher:
    """Listens to the kernel's uevents for one PCI device while a change is made.

    The kernel source needs no udevd (libvirt's view does, but that is checked separately).
    """

    def __init__(self, address: PciAddress) -> None:
        self.address = address
        self.events: list[PciEvent] = []
        self._monitor: pyudev.Monitor | None = None

    def __enter__(self) -> PciEventWatcher:
        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
        monitor.filter_by("pci")
        monitor.start()
        self._monitor = monitor
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._monitor = None

    def wait_for(self, action: str, driver: str | None = None, timeout: float = 5.0) -> PciEvent | None:
        """The first event of ``action`` (for ``driver``) on the device, reading what arrived meanwhile."""
        assert self._monitor is not None, "use PciEventWatcher as a context manager"
        for event in self.events:
            if event.action == action and (driver is None or event.driver == driver):
                return event
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            device = self._monitor.poll(timeout=remaining)
            if device is None:  # a timeout, or a uevent libudev dropped (another subsystem): the loop decides
                continue
            if device.sys_name != self.address.bdf:
                continue
            event = PciEvent(device.action or "", device.sys_name, device.properties.get("DRIVER"))
            self.events.append(event)
            if event.action == action and (driver is None or event.driver == driver):
                return event
        return None

    def seen(self) -> str:
        return ", ".join(f"{e.action}({e.driver or '-'})" for e in self.events) or "no events"
