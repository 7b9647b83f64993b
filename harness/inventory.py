"""Device inventory: for every PCI device, can it be assigned to a guest, and if not, why not."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.host.host import Host
from harness.host.pci import PciDevice
from harness.host.pcicaps import PortType
from harness.xml.address import PciAddress

# Drivers a group member may be bound to without breaking the group's viability (the kernel's vfio rule).
VIABLE_DRIVERS = frozenset({"vfio-pci", "pci-stub", "pcieport"})


@dataclass(frozen=True)
class DeviceAssessment:
    device: PciDevice
    group_members: tuple[PciAddress, ...]
    reasons: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    # Isolation: ACS on the way to the root complex, and why the group has more than this device.
    acs_path: str = ""
    group_reason: str | None = None

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


def upstream_bridges(host: Host, device: PciDevice) -> list[PciDevice]:
    """The bridges and ports between a device and the root complex, nearest first."""
    chain = []
    parent = device.parent
    while parent is not None and parent in host.pci.devices:
        chain.append(host.pci.devices[parent])
        parent = host.pci.devices[parent].parent
    return chain


def _kind(device: PciDevice) -> str:
    if device.config is None or device.config.port_type is None:
        return "conventional PCI"
    return (
        device.config.port_type.name.lower().replace("_", " ").replace("pcie", "PCIe").replace("pci", "PCI")
    )


def _without_acs(devices: list[PciDevice]) -> tuple[list[PciDevice], list[PciDevice]]:
    """(devices that do not isolate what is below/beside them, devices whose ACS is unknown)."""
    lacking, unknown = [], []
    for device in devices:
        isolates = device.config.acs_isolates() if device.config is not None else None
        if isolates is None:
            unknown.append(device)
        elif not isolates:
            lacking.append(device)
    return lacking, unknown


def describe_acs_path(host: Host, device: PciDevice) -> str:
    """One line for the inventory: does the path from this function to the root complex have ACS."""
    bridges = upstream_bridges(host, device)
    lacking, unknown = _without_acs([device, *bridges])
    parts = []
    for other in lacking:
        if other is device:
            parts.append(
                "a multi-function device without ACS" if device.is_multifunction else "no ACS on this port"
            )
        else:
            missing = other.config.acs.missing() if other.config and other.config.acs else []
            detail = f"ACS {', '.join(missing)} not enabled" if missing else "no ACS capability"
            parts.append(f"{other.address} ({_kind(other)}): {detail}")
    if unknown:
        parts.append(
            f"ACS unknown at {', '.join(str(d.address) for d in unknown)} (config space beyond 64 bytes is root's only, and older snapshots lack it)"
        )
    if parts:
        return "; ".join(parts)
    where = ", ".join(f"{b.address} ({_kind(b)})" for b in bridges) or "none (on the root complex)"
    return f"ACS on the whole path; ports: {where}"


def explain_group(host: Host, device: PciDevice) -> str | None:
    """Why the kernel put other devices in this device's IOMMU group, from the topology and ACS."""
    group = host.pci.group_of(device)
    if group is None or len(group.members) < 2:
        return None
    reasons = []
    slot = device.address.slot_address
    functions = [m for m in group.members if m.address.slot_address == slot]
    if len(functions) > 1 and any(
        m.is_multifunction and m.config and m.config.acs_isolates() is False for m in functions
    ):
        reasons.append(
            f"functions {', '.join(str(m.address) for m in functions)} of one multi-function device without ACS "
            "can reach each other without the IOMMU (the common case: assign all its functions together)"
        )
    bridges = upstream_bridges(host, device)
    in_group = {m.address for m in group.members}
    for bridge in bridges:
        if (bridge.config is not None and bridge.config.port_type is PortType.PCIE_TO_PCI_BRIDGE) or (
            bridge.config is None and device.config is None and bridge.address in in_group
        ):
            reasons.append(
                f"behind the PCIe-to-PCI bridge {bridge.address}: conventional PCI gives every device below it "
                "the bridge's requester ID"
            )
            break
    ports = [device] if device.is_bridge and len(group.members) > 1 else []
    lacking, _ = _without_acs(
        [b for b in [*ports, *bridges] if b.address in in_group and b.config is not None]
    )
    reasons += [
        f"{port.address} ({_kind(port)}) has no ACS: what is below it is not isolated from it"
        for port in lacking
        if port.config is None or port.config.port_type is not PortType.PCIE_TO_PCI_BRIDGE
    ]
    if not reasons:
        reasons.append("no ACS fact read here explains it (a platform quirk, or a port above without ACS)")
    return "; ".join(reasons)


# PCI class 0x0806: system peripheral, IOMMU (the AMD IOMMU is a PCI function of its own).
IOMMU_CLASS = 0x0806


def no_group_reason(host: Host, device: PciDevice) -> str:
    """Why the kernel gave this device no IOMMU group: an IOMMU that is off is only one of the reasons."""
    if int(device.class_code, 16) >> 8 == IOMMU_CLASS:
        return (
            f"is the IOMMU itself (class {device.class_code}): the kernel does not put the IOMMU behind "
            "itself, so it has no IOMMU group and is never assignable"
        )
    groups = host.kernel.iommu_group_count
    if groups:
        return (
            f"has no IOMMU group although the IOMMU is active ({groups} groups): the IOMMU does not translate "
            "this device (outside the ACPI DMAR/IVRS device scope, or on a bus that bypasses the IOMMU)"
        )
    return "has no IOMMU group: the IOMMU is not active on this host (/sys/kernel/iommu_groups is empty)"


def assess_device(host: Host, device: PciDevice) -> DeviceAssessment:
    group = host.pci.group_of(device)
    critical = host.critical.get(device.address, [])
    assessment = DeviceAssessment(
        device,
        group.addresses if group else (),
        critical=list(critical),
        acs_path=describe_acs_path(host, device),
        group_reason=explain_group(host, device),
    )
    reasons = assessment.reasons
    if device.is_bridge:
        reasons.append(f"is a bridge or port (class {device.class_code}): never assignable")
    if critical:
        reasons.append("host-critical: " + ", ".join(critical))
    if device.iommu_group is None:
        reasons.append(no_group_reason(host, device))
        return assessment
    if group is not None:
        critical_peers = [str(m.address) for m in group.others(device.address) if m.address in host.critical]
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
