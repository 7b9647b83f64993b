"""The guard: which devices the harness may change, and the refusal of everything else."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from harness.errors import HarnessError
from harness.host.host import Host
from harness.host.pci import PciDevice
from harness.xml.address import PciAddress


class DeviceRefusedError(HarnessError):
    """The harness will not change this device; nothing was changed."""


class DeviceGuard:
    """Permits changes only to allowlisted devices, and never to host-critical ones."""

    def __init__(self, host: Host, allowlist: Iterable[PciAddress]) -> None:
        self.host = host
        self.allowlist = tuple(dict.fromkeys(allowlist))

    def refusal(self, address: PciAddress) -> str | None:
        """Why ``address`` may not be changed, or None when it may."""
        address = _function(address)
        if address not in self.host.pci.devices:
            return f"{address} is not a PCI device of this host"
        critical = self.host.critical.get(address)
        if critical:
            listed = (
                " (it is on --harness-allow, which cannot override this)" if address in self.allowlist else ""
            )
            return (
                f"{address} is host-critical: it {', '.join(critical)}; the harness never detaches it{listed}"
            )
        group = self.host.pci.group_of(self.host.pci.devices[address])
        if group is not None:
            peers = [
                str(member.address)
                for member in group.others(address)
                if member.address in self.host.critical
            ]
            if peers:
                return f"{address} shares IOMMU group {group.number} with host-critical {', '.join(peers)}"
        device = self.host.pci.devices[address]
        # A VF the harness made from an allowlisted PF is the PF's to give out.
        if address not in self.allowlist and device.physfn not in self.allowlist:
            return f"{address} is not on the allowlist (--harness-allow / HARNESS_ALLOW)"
        return None

    def permit(self, address: PciAddress) -> PciDevice:
        """The device, if the harness may change it; raises DeviceRefusedError otherwise."""
        reason = self.refusal(address)
        if reason is not None:
            raise DeviceRefusedError(f"refused: {reason}; nothing was changed")
        return self.host.pci.devices[_function(address)]

    def permitted(self) -> list[PciAddress]:
        return [bdf for bdf in self.allowlist if self.refusal(bdf) is None]


def _function(address: PciAddress) -> PciAddress:
    """The host function a hostdev source names: its ``multifunction`` (guest placement) does not count."""
    return address if address.multifunction is None else replace(address, multifunction=None)
