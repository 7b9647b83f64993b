"""The answering guest's serial protocol, both sides: the ``/init`` that writes a report line each time the
guest's PCI tree changes, and the reader of those lines in the serial log libvirt writes.

Line format, one per change (the first one also means "booted")::

    HOSTDEV-GUEST-PCI <seq> <uptime> 0000:00:00.0=8086:29c0 0000:00:01.0=1af4:1000 ...
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.xml.guest import GuestMachine

PCI_REPORT_MARKER = "HOSTDEV-GUEST-PCI"
# Seconds between two looks at /sys/bus/pci/devices: the loop uses shell builtins only (no fork but sleep).
POLL_INTERVAL_S = 0.5
SERIAL_LOG_DIR = Path("/var/log/libvirt/qemu")
_REPORT = re.compile(
    rf"{PCI_REPORT_MARKER} (\d+) ([0-9.]+)((?: [0-9a-f:.]+=[0-9a-f]{{4}}:[0-9a-f]{{4}})*)\s*$"
)


# --- the writer: the guest's /init ----------------------------------------------------------------
def guest_init_text() -> str:
    """/init: mount sysfs, then report the PCI tree on the console each time it changes. Never exits."""
    return f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
seq=0
last=
while :; do
    list=
    for dev in /sys/bus/pci/devices/*; do
        [ -r "$dev/vendor" ] || continue
        read vendor < "$dev/vendor"
        read device < "$dev/device"
        list="$list ${{dev##*/}}=${{vendor#0x}}:${{device#0x}}"
    done
    if [ "$list" != "$last" ]; then
        seq=$((seq + 1))
        read uptime idle < /proc/uptime
        echo "{PCI_REPORT_MARKER} $seq $uptime$list"
        last=$list
    fi
    sleep {POLL_INTERVAL_S}
done
"""


# --- the reader: the serial log on the host ------------------------------------------------------
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


def fresh_serial_log(machine: GuestMachine) -> None:
    """Make the serial log's directory and remove an old log, so reports start with this guest's boot."""
    if machine.serial is not None:
        Path(machine.serial.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(machine.serial.path)
