"""Changes to PCI devices: detach to vfio-pci and back, VF counts, VF driver autoprobe.

Each is a ``Change`` (harness.changes): it reads what it will have to put back when it is created
(``DriverDetach.of``), applies itself through libvirt or sysfs, verifies itself where a person would look
(the sysfs driver link, ``/dev/vfio/<group>``, the virtfn links) and undoes itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import libvirt

from harness.changes import Change, ChangeContext, ChangeError
from harness.host.pci import PciDevice
from harness.host.root import HostRoot
from harness.xml.address import PciAddress

VFIO_DRIVER = "vfio-pci"


def current_driver(root: HostRoot, address: str | PciAddress) -> str | None:
    return root.link_name(f"/sys/bus/pci/devices/{address}/driver")


def wait_for_driver(
    root: HostRoot, address: str | PciAddress, expected: str | None, timeout: float = 10.0
) -> str | None:
    """Poll sysfs until the driver link matches; bind and unbind finish asynchronously for some drivers."""
    deadline = time.monotonic() + timeout
    found = current_driver(root, address)
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        found = current_driver(root, address)
    return found


def require_driver(
    root: HostRoot, address: str | PciAddress, expected: str | None, *, after: str, look: str
) -> None:
    """Wait for ``expected`` on ``address``; otherwise a ChangeError saying what was found and where to look."""
    found = wait_for_driver(root, address, expected)
    if found != expected:
        raise ChangeError(f"{after}: expected driver {expected or 'none'}, found {found or 'none'} ({look})")


def vfio_group_node(group: int | None) -> str | None:
    return None if group is None else f"/dev/vfio/{group}"


def node_device(connection: libvirt.virConnect, address: PciAddress) -> libvirt.virNodeDevice:
    try:
        return connection.nodeDeviceLookupByName(address.nodedev_name)
    except libvirt.libvirtError as exc:
        raise ChangeError(
            f"libvirt has no node device {address.nodedev_name}: {exc.get_error_message()} "
            "(reproduce: virsh nodedev-list --cap pci)"
        ) from None


@dataclass(frozen=True)
class DriverDetach(Change, kind="detach"):
    """``virsh nodedev-detach``: the device leaves its host driver for vfio-pci; undone by reattach."""

    device: PciAddress
    driver: str | None  # the host driver to give it back to
    group: int | None

    @classmethod
    def of(cls, device: PciDevice) -> DriverDetach:
        return cls(device.address, device.driver, device.iommu_group)

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def describe(self) -> str:
        return f"detach {self.device} from {self.driver or 'no driver'} to {VFIO_DRIVER}"

    def reproduce(self) -> str:
        return f"virsh nodedev-detach {self.device.nodedev_name}"

    def apply(self, context: ChangeContext) -> None:
        try:
            node_device(context.connection, self.device).detachFlags("vfio", 0)
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"nodedev-detach {self.device} failed: {exc.get_error_message()} (reproduce: {self.reproduce()})"
            ) from None

    def verify(self, context: ChangeContext) -> None:
        require_driver(
            context.root,
            self.device,
            VFIO_DRIVER,
            after=f"after nodedev-detach {self.device}",
            look=f"look at /sys/bus/pci/devices/{self.device}/driver",
        )
        node = vfio_group_node(self.group)
        if node is not None and not context.root.exists(node):
            raise ChangeError(
                f"{self.device} is on {VFIO_DRIVER} but {node} does not exist (ls -l /dev/vfio)"
            )

    def undo(self, context: ChangeContext) -> str:
        found = current_driver(context.root, self.device)
        if found == self.driver:
            return f"{self.device} is on {self.driver or 'no driver'} already"
        try:
            node_device(context.connection, self.device).reAttach()  # takes no flags in libvirt-python
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"nodedev-reattach {self.device} failed: {exc.get_error_message()} "
                f"(reproduce: virsh nodedev-reattach {self.device.nodedev_name})"
            ) from None
        require_driver(
            context.root,
            self.device,
            self.driver,
            after=f"after nodedev-reattach {self.device}",
            look=f"reproduce: virsh nodedev-reattach {self.device.nodedev_name}",
        )
        return f"reattached {self.device} to {self.driver or 'no driver'}"


def _sysfs(device: PciAddress, name: str) -> str:
    return f"/sys/bus/pci/devices/{device}/{name}"


def _write(context: ChangeContext, host_path: str, value: str) -> None:
    try:
        context.root.resolve(host_path).write_text(value)
    except OSError as exc:
        raise ChangeError(f"writing {value} to {host_path} failed: {exc.strerror}") from None


@dataclass(frozen=True)
class VfCount(Change, kind="sriov_numvfs"):
    """``echo N > sriov_numvfs`` on a PF, through 0 as the kernel requires; undone by the old count."""

    device: PciAddress
    before: int
    count: int

    @classmethod
    def of(cls, root: HostRoot, pf: PciDevice, count: int) -> VfCount:
        address = pf.address
        if not root.exists(_sysfs(address, "sriov_numvfs")):
            raise ChangeError(f"{pf.address} is not an SR-IOV PF (no {_sysfs(address, 'sriov_numvfs')})")
        total = int(root.read_stripped(_sysfs(address, "sriov_totalvfs")) or 0)
        if not 0 <= count <= total:
            raise ChangeError(f"{pf.address} offers 0 to {total} VFs, not {count}; nothing was changed")
        return cls(address, int(root.read_stripped(_sysfs(address, "sriov_numvfs")) or 0), count)

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def describe(self) -> str:
        return f"set {self.device} sriov_numvfs {self.before} -> {self.count}"

    def reproduce(self) -> str:
        return f"echo 0 > {_sysfs(self.device, 'sriov_numvfs')}; echo {self.count} > {_sysfs(self.device, 'sriov_numvfs')}"

    def _set(self, context: ChangeContext, count: int) -> None:
        path = _sysfs(self.device, "sriov_numvfs")
        if int(context.root.read_stripped(path) or 0) == count:
            return
        _write(context, path, "0")  # the kernel refuses N -> M unless one of them is 0
        if count:
            _write(context, path, str(count))

    def apply(self, context: ChangeContext) -> None:
        self._set(context, self.count)

    def verify(self, context: ChangeContext) -> None:
        found = int(context.root.read_stripped(_sysfs(self.device, "sriov_numvfs")) or 0)
        links = [
            n for n in context.root.listdir(f"/sys/bus/pci/devices/{self.device}") if n.startswith("virtfn")
        ]
        if found != self.count or len(links) != self.count:
            raise ChangeError(
                f"{self.device}: expected {self.count} VFs, sriov_numvfs reads {found} and there are "
                f"{len(links)} virtfn links (look at /sys/bus/pci/devices/{self.device}/)"
            )

    def undo(self, context: ChangeContext) -> str:
        self._set(context, self.before)
        found = int(context.root.read_stripped(_sysfs(self.device, "sriov_numvfs")) or 0)
        if found != self.before:
            raise ChangeError(f"{self.device}: sriov_numvfs reads {found} after undo, expected {self.before}")
        return f"set {self.device} sriov_numvfs back to {self.before}"


@dataclass(frozen=True)
class VfAutoprobe(Change, kind="sriov_drivers_autoprobe"):
    """Whether new VFs get a host driver (off for VFs meant for guests); undone by the old setting."""

    device: PciAddress
    before: bool
    enabled: bool

    @classmethod
    def of(cls, root: HostRoot, pf: PciDevice, enabled: bool) -> VfAutoprobe:
        address = pf.address
        return cls(address, root.read_stripped(_sysfs(address, "sriov_drivers_autoprobe")) == "1", enabled)

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def describe(self) -> str:
        return f"set {self.device} sriov_drivers_autoprobe to {int(self.enabled)}"

    def reproduce(self) -> str:
        return f"echo {int(self.enabled)} > {_sysfs(self.device, 'sriov_drivers_autoprobe')}"

    def apply(self, context: ChangeContext) -> None:
        _write(context, _sysfs(self.device, "sriov_drivers_autoprobe"), str(int(self.enabled)))

    def verify(self, context: ChangeContext) -> None:
        found = context.root.read_stripped(_sysfs(self.device, "sriov_drivers_autoprobe"))
        if found != str(int(self.enabled)):
            raise ChangeError(
                f"{self.device}: sriov_drivers_autoprobe reads {found}, expected {int(self.enabled)}"
            )

    def undo(self, context: ChangeContext) -> str:
        _write(context, _sysfs(self.device, "sriov_drivers_autoprobe"), str(int(self.before)))
        return f"set {self.device} sriov_drivers_autoprobe back to {int(self.before)}"
