"""Device inventory: for every PCI device, can it be assigned to a guest, and if not, why not."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.host.host import Host
from harness.host.pci import PciDevice

# Drivers a group member may be bound to without breaking the group's viability (the kernel's vfio rule).
VIABLE_DRIVERS = frozenset({"vfio-pci", "pci-stub", "pcieport"})


@dataclass(frozen=True)
class DeviceAssessment:
    device: PciDevice
    group_members: tuple[str, ...]
    reasons: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)

    @property
    def assignable(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        if self.critical:
            return "host-critical"
        return "assignable" if self.assignable else "not assignable"

    def explain(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "can be assigned"


def _blocking_members(host: Host, device: PciDevice) -> list[PciDevice]:
    group = host.pci.group_of(device)
    if group is None:
        return []
    return [
        other
        for other in group.others(device.address)
        if not other.is_bridge and other.driver is not None and other.driver not in VIABLE_DRIVERS
    ]


def assess_device(host: Host, device: PciDevice) -> DeviceAssessment:
    group = host.pci.group_of(device)
    critical = host.critical.get(device.address, [])
    assessment = DeviceAssessment(device, group.addresses if group else (), critical=list(critical))
    reasons = assessment.reasons
    if device.is_bridge:
        reasons.append(f"is a bridge or port (class {device.class_code}): never assignable")
    if critical:
        reasons.append("host-critical: " + ", ".join(critical))
    if device.iommu_group is None:
        reasons.append("has no IOMMU group: the IOMMU is not active")
        return assessment
    if group is not None:
        critical_peers = [m.address for m in group.others(device.address) if m.address in host.critical]
        if critical_peers:
            reasons.append(
                f"shares IOMMU group {device.iommu_group} with host-critical {', '.join(critical_peers)}"
            )
    blocking = _blocking_members(host, device)
    if blocking:
        listed = ", ".join(f"{m.address} (bound to {m.driver})" for m in blocking)
        reasons.append(
            f"IOMMU group {device.iommu_group} is not viable: {listed}; assign the whole group together "
            "or unbind them"
        )
    return assessment


def assess_all(host: Host) -> list[DeviceAssessment]:
    return [assess_device(host, device) for device in host.pci]
