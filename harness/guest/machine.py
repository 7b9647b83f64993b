"""The answering guest as a machine: a q35 guest booted from the answering image with free root ports for
hotplug and its console on a file, and the running guest that waits for its first PCI report."""

from __future__ import annotations

import time
from dataclasses import dataclass

import libvirt

from harness.errors import HarnessEnvironmentError
from harness.guest.image import GuestImage
from harness.guest.protocol import SERIAL_LOG_DIR, GuestConsole, GuestPciReport
from harness.xml.domain import Domain, DomainType
from harness.xml.guest import GuestMachine, KernelBoot, SerialLog, q35_root_ports

ANSWERING_GUEST_MEMORY_KIB = 128 * 1024


class AnsweringGuestError(HarnessEnvironmentError):
    """The answering guest did not answer (no PCI report on its console); the message shows the console."""


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
            raise AnsweringGuestError(
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
