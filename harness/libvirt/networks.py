"""libvirt networks the harness makes (VF pools: ``<forward mode='hostdev'>``) as changes that undo themselves."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from harness.changes import Change, ChangeContext, ChangeError


def lookup_network(connection: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    try:
        return connection.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
            raise ChangeError(f"looking up network {name} failed: {exc.get_error_message()}") from None
        return None


@dataclass(frozen=True)
class DefinedNetwork(Change, kind="network"):
    """``virsh net-define`` and ``net-start``; undone by ``net-destroy`` and ``net-undefine``."""

    name: str
    xml: str
    start: bool = True

    def describe(self) -> str:
        return f"define {'and start ' if self.start else ''}network {self.name}"

    def reproduce(self) -> str:
        return f"virsh net-define network.xml{f'; virsh net-start {self.name}' if self.start else ''}"

    def apply(self, context: ChangeContext) -> None:
        try:
            network = context.connection.networkDefineXML(self.xml)
            if self.start:
                network.create()
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"network {self.name}: {exc.get_error_message()} (reproduce: {self.reproduce()})"
            ) from None

    def verify(self, context: ChangeContext) -> None:
        network = lookup_network(context.connection, self.name)
        if network is None or (self.start and not network.isActive()):
            raise ChangeError(
                f"network {self.name} is not {'active' if self.start else 'defined'} (virsh net-list --all)"
            )

    def undo(self, context: ChangeContext) -> str:
        network = lookup_network(context.connection, self.name)
        if network is None:
            return f"network {self.name} is gone already"
        try:
            if network.isActive():
                network.destroy()
            network.undefine()
        except libvirt.libvirtError as exc:
            raise ChangeError(
                f"removing network {self.name} failed: {exc.get_error_message()} "
                f"(reproduce: virsh net-destroy {self.name}; virsh net-undefine {self.name})"
            ) from None
        return f"removed network {self.name}"
