"""libvirt networks as changes: ``virsh net-define``/``net-start``/``net-autostart`` of a VF pool, journaled
first and undone by stopping and undefining it."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.host.netdevs import netdev_function
from harness.host.root import HostRoot
from harness.libvirt.networks import lookup_network
from harness.xml.address import PciAddress
from harness.xml.network import Network


class NetworkError(ChangeError):
    """libvirt refused a network step; keeps libvirt's error code and message for the suites to check."""

    def __init__(self, message: str, error: libvirt.libvirtError) -> None:
        self.code = error.get_error_code()
        self.libvirt_message = error.get_error_message() or ""
        super().__init__(message)


@dataclass(frozen=True)
class DefinedNetwork(Change, kind="network"):
    """``virsh net-define``, ``net-start`` and ``net-autostart``; undone by ``net-autostart --disable``,
    ``net-destroy`` and ``net-undefine``."""

    name: str
    xml: str
    start: bool = True
    autostart: bool = False
    # The PCI function behind <pf dev='...'>, read from sysfs when the change is built: libvirt hands out
    # its VFs, so the guard must permit it. None when no such interface exists (libvirt refuses that pool).
    pf_device: PciAddress | None = None

    @classmethod
    def of(
        cls, root: HostRoot, network: Network, *, start: bool = True, autostart: bool = False
    ) -> DefinedNetwork:
        pf = network.forward.pf if network.forward is not None else None
        return cls(
            network.name, network.to_xml(), start, autostart, netdev_function(root, pf) if pf else None
        )

    def touches(self) -> tuple[PciAddress, ...]:
        forward = Network.parse(self.xml).forward
        addresses = forward.addresses if forward is not None else ()
        return (*addresses, self.pf_device) if self.pf_device is not None else addresses

    def describe(self) -> str:
        steps = ["define"] + ["start"] * self.start + ["autostart"] * self.autostart
        return f"{', '.join(steps)} network {self.name}"

    def reproduce(self) -> str:
        return "; ".join(
            ["virsh net-define network.xml"]
            + [f"virsh net-start {self.name}"] * self.start
            + [f"virsh net-autostart {self.name}"] * self.autostart
        )

    def apply(self, context: ChangeContext) -> None:
        try:
            network = context.connection.networkDefineXML(self.xml)
            if self.start:
                network.create()
            if self.autostart:
                network.setAutostart(1)
        except libvirt.libvirtError as exc:
            raise NetworkError(
                f"network {self.name}: {exc.get_error_message()} (reproduce: {self.reproduce()})", exc
            ) from None

    def verify(self, context: ChangeContext) -> None:
        network = lookup_network(context.connection, self.name)
        if network is None or (self.start and not network.isActive()):
            raise ChangeError(
                f"network {self.name} is not {'active' if self.start else 'defined'} (virsh net-list --all)"
            )
        if self.autostart and not network.autostart():
            raise ChangeError(
                f"network {self.name} does not autostart after net-autostart (virsh net-info {self.name})"
            )

    def undo(self, context: ChangeContext) -> str:
        network = lookup_network(context.connection, self.name)
        if network is None:
            return f"network {self.name} is gone already"
        try:
            if network.autostart():
                network.setAutostart(0)
            if network.isActive():
                network.destroy()
            network.undefine()
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"removing network {self.name} failed: {exc.get_error_message()} "
                f"(reproduce: virsh net-autostart --disable {self.name}; virsh net-destroy {self.name}; "
                f"virsh net-undefine {self.name})"
            ) from None
        return f"removed network {self.name}"
