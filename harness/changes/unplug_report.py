"""What a host-side removal of a device assigned to a guest did (reads only): the guest's state, libvirt's
live XML and node devices, sysfs, the host kernel's messages and the journal entries that touch it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import libvirt

from harness.changes.hotplug import live_hostdev_sources
from harness.changes.journal import ChangeJournal
from harness.changes.protocol import ChangeContext, decode
from harness.host.drivers import current_driver
from harness.host.kernel import read_kernel_log
from harness.host.sysfs import pci_path
from harness.libvirt.guests import lookup_guest
from harness.xml.address import PciAddress

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
        in_sysfs=context.root.exists(pci_path(source)),
        host_driver=current_driver(context.root, source),
        kernel_messages=tuple(kernel[-kernel_lines:]),
        pending=pending,
    )
