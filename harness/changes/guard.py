"""The guard: which devices the harness may change, and the refusal of everything else."""

from __future__ import annotations

from collections.abc import Iterable

from harness.errors import HarnessError
from harness.host.host import Host
from harness.host.pci import PciDevice, normalize_bdf
from harness.xml.address import PciAddress


class DeviceRefusedError(HarnessError):
    """The harness will not change this device; nothing was changed."""


class DeviceGuard:
    """Permits changes only to allowlisted devices, and never to host-critical ones."""

    def __init__(self, host: Host, allowlist: Iterable[str]) -> None:
        self.host = host
        self.allowlist = tuple(dict.fromkeys(normalize_bdf(address) for address in allowlist))

    def refusal(self, address: str | PciAddress) -> str | None:
        """Why ``address`` may not be changed, or None when it may."""
        bdf = normalize_bdf(str(address))
        if bdf not in self.host.pci.devices:
            return f"{bdf} is not a PCI device of this host"
        critical = self.host.critical.get(bdf)
        if critical:
            listed = (
                " (it is on --harness-allow, which cannot override this)" if bdf in self.allowlist else ""
            )
            return f"{bdf} is host-critical: it {', '.join(critical)}; the harness never detaches it{listed}"
        group = self.host.pci.group_of(self.host.pci.devices[bdf])
        if group is not None:
            peers = [member.address for member in group.others(bdf) if member.address in self.host.critical]
            if peers:
                return f"{bdf} shares IOMMU group {group.number} with host-critical {', '.join(peers)}"
        device = self.host.pci.devices[bdf]
        # A VF the harness made from an allowlisted PF is the PF's to give out.
        if bdf not in self.allowlist and device.physfn not in self.allowlist:
            return f"{bdf} is not on the allowlist (--harness-allow / HARNESS_ALLOW)"
        return None

    def permit(self, address: str | PciAddress) -> PciDevice:
        """The device, if the harness may change it; raises DeviceRefusedError otherwise."""
        reason = self.refusal(address)
        if reason is not None:
            raise DeviceRefusedError(f"refused: {reason}; nothing was changed")
        return self.host.pci.devices[normalize_bdf(str(address))]

    def permitted(self) -> list[str]:
        return [bdf for bdf in self.allowlist if self.refusal(bdf) is None]
