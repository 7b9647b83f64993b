"""Changing devices: detach to vfio-pci, reattach, VF counts. Guarded, journaled, verified."""

from __future__ import annotations

import time
from dataclasses import dataclass

import libvirt

from harness.guard import DeviceGuard
from harness.host.pci import nodedev_name
from harness.host.root import HostRoot
from harness.journal import ChangeJournal, JournalEntry
from harness.libvirt.guests import destroy_guest

VFIO_DRIVER = "vfio-pci"


class DeviceChangeError(RuntimeError):
    """A change did not take effect as expected; the message says what was expected and found."""


@dataclass(frozen=True)
class Reproduce:
    """The virsh command a person can run to see the same thing by hand."""

    command: str

    def __str__(self) -> str:
        return f"reproduce: {self.command}"


def current_driver(root: HostRoot, address: str) -> str | None:
    return root.link_name(f"/sys/bus/pci/devices/{address}/driver")


def wait_for_driver(root: HostRoot, address: str, expected: str | None, timeout: float = 10.0) -> str | None:
    """Poll sysfs until the driver link matches; bind and unbind finish asynchronously for some drivers."""
    deadline = time.monotonic() + timeout
    found = current_driver(root, address)
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        found = current_driver(root, address)
    return found


class DeviceChanger:
    """The only place the harness changes a device; every change is guarded and journaled first."""

    def __init__(self, connection: libvirt.virConnect, guard: DeviceGuard, journal: ChangeJournal) -> None:
        self.connection = connection
        self.guard = guard
        self.journal = journal
        self.root = guard.host.root

    def _nodedev(self, address: str) -> libvirt.virNodeDevice:
        try:
            return self.connection.nodeDeviceLookupByName(nodedev_name(address))
        except libvirt.libvirtError as exc:
            raise DeviceChangeError(
                f"libvirt has no node device {nodedev_name(address)}: {exc.get_error_message()} "
                f"({Reproduce('virsh nodedev-list --cap pci')})"
            ) from exc

    def detach(self, address: str) -> str | None:
        """Detach ``address`` to vfio-pci through libvirt; returns the driver it had."""
        self.guard.permit(address)
        before = current_driver(self.root, address)
        device = self._nodedev(address)
        entry = self.journal.begin("detach", address, before)
        try:
            device.detachFlags("vfio", 0)
        except libvirt.libvirtError as exc:
            self._settle(entry, address, before)
            raise DeviceChangeError(
                f"nodedev-detach {address} failed: {exc.get_error_message()} "
                f"({Reproduce(f'virsh nodedev-detach {nodedev_name(address)}')})"
            ) from exc
        found = wait_for_driver(self.root, address, VFIO_DRIVER)
        if found != VFIO_DRIVER:
            raise DeviceChangeError(
                f"after nodedev-detach {address}: expected driver {VFIO_DRIVER}, found {found or 'none'} "
                f"(look at /sys/bus/pci/devices/{address}/driver)"
            )
        return before

    def _settle(self, entry_id: str, address: str, before: str | None) -> None:
        """A failed change that left the device as it was needs no undo."""
        if current_driver(self.root, address) == before:
            self.journal.complete(entry_id)

    def reattach(self, address: str) -> None:
        """Give ``address`` back to the driver the journal recorded for it."""
        for entry in self.journal.pending():
            if entry.action == "detach" and entry.device == address:
                self._undo_detach(entry)
                return
        raise DeviceChangeError(
            f"{address} has no pending detach in {self.journal.path}: nothing to reattach"
        )

    def _undo_detach(self, entry: JournalEntry) -> None:
        try:
            self._nodedev(entry.device).reAttach()
        except libvirt.libvirtError as exc:
            raise DeviceChangeError(
                f"nodedev-reattach {entry.device} failed: {exc.get_error_message()} "
                f"({Reproduce(f'virsh nodedev-reattach {nodedev_name(entry.device)}')})"
            ) from exc
        found = wait_for_driver(
            self.root, entry.device, entry.before if isinstance(entry.before, str) else None
        )
        if found != entry.before:
            raise DeviceChangeError(
                f"after nodedev-reattach {entry.device}: expected driver {entry.before or 'none'}, "
                f"found {found or 'none'}"
            )
        self.journal.complete(entry.id)

    def set_numvfs(self, address: str, count: int, *, autoprobe: bool | None = None) -> int:
        """Set the VF count of an SR-IOV PF (through 0, as the kernel requires); returns the old count.

        ``autoprobe=False`` keeps host drivers off the new VFs (sriov_drivers_autoprobe), as one does
        for VFs meant for guests; the old setting is journaled and restored too.
        """
        self.guard.permit(address)
        base = f"/sys/bus/pci/devices/{address}"
        numvfs = self.root.resolve(f"{base}/sriov_numvfs")
        if not numvfs.exists():
            raise DeviceChangeError(f"{address} is not an SR-IOV PF (no {base}/sriov_numvfs)")
        total = int(self.root.read_stripped(f"{base}/sriov_totalvfs") or 0)
        if not 0 <= count <= total:
            raise DeviceChangeError(f"{address} offers 0 to {total} VFs, not {count}; nothing was changed")
        if autoprobe is not None:
            probe = self.root.resolve(f"{base}/sriov_drivers_autoprobe")
            old_probe = probe.read_text().strip()
            probe_entry = self.journal.begin("sriov_drivers_autoprobe", address, old_probe)
            probe.write_text("1" if autoprobe else "0")
            if old_probe == probe.read_text().strip():
                self.journal.complete(probe_entry)
        before = int(numvfs.read_text())
        entry_id = self.journal.begin("sriov_numvfs", address, before)
        if before:
            numvfs.write_text("0")
        if count:
            numvfs.write_text(str(count))
        found = int(numvfs.read_text())
        if found != count:
            raise DeviceChangeError(f"{address}: expected {count} VFs, sriov_numvfs reads {found}")
        if count == before:
            self.journal.complete(entry_id)
        return before

    def _undo_numvfs(self, entry: JournalEntry) -> None:
        path = self.root.resolve(f"/sys/bus/pci/devices/{entry.device}/sriov_numvfs")
        path.write_text("0")
        if isinstance(entry.before, int) and entry.before:
            path.write_text(str(entry.before))
        self.journal.complete(entry.id)

    def restore_pending(self, device: str | None = None) -> list[str]:
        """Undo the changes the journal still holds (for ``device``, or all), newest first."""
        done = []
        for entry in self.journal.pending():
            if device is not None and entry.device != device:
                continue
            if entry.action == "detach":
                self._undo_detach(entry)
                done.append(f"reattached {entry.device} to {entry.before or 'no driver'}")
            elif entry.action == "sriov_numvfs":
                self._undo_numvfs(entry)
                done.append(f"set {entry.device} sriov_numvfs back to {entry.before}")
            elif entry.action == "sriov_drivers_autoprobe":
                self.root.resolve(f"/sys/bus/pci/devices/{entry.device}/sriov_drivers_autoprobe").write_text(
                    str(entry.before)
                )
                self.journal.complete(entry.id)
                done.append(f"set {entry.device} sriov_drivers_autoprobe back to {entry.before}")
            elif entry.action == "guest":
                # libvirt gives a managed hostdev back to its driver when the guest goes away.
                destroy_guest(self.connection, entry.device)
                self.journal.complete(entry.id)
                done.append(f"destroyed guest {entry.device}")
        self.journal.compact()
        return done
