"""A PCI device detached from its host driver to vfio-pci (``virsh nodedev-detach``) and given back.

``DriverDetach.of`` reads what it will have to put back when it is created; it verifies itself where a
person would look (the sysfs driver link, ``/dev/vfio/<group>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.host.drivers import VFIO_DRIVER, current_driver, require_driver, vfio_group_node
from harness.host.pci import PciDevice
from harness.host.sysfs import pci_path
from harness.xml.address import PciAddress


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
            look=f"look at {pci_path(self.device, 'driver')}",
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
