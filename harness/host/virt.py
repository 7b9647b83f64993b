"""Is this host itself a virtual machine (a nested host), and what that changes for each check.

Three independent signs, because each can be missing: the CPU's ``hypervisor`` flag, the firmware's DMI
strings (/sys/class/dmi/id), and paravirtual devices on the PCI bus (virtio, vendor 0x1af4). On a nested
host the IOMMU is emulated by the hypervisor: with VT-d's Caching Mode (cap bit 7) every mapping change
traps to it, so DMA map/unmap is slow but correct. Without it, devices the hypervisor emulates still work
through vfio here (measured in the lab: an emulated e1000e on vfio-pci in an L2 guest, DMA and MSI-X, no
DMAR fault), because the hypervisor walks the guest's page tables itself; only a device the outer host
passes through (its own vfio-pci) needs Caching Mode, and QEMU refuses to start such a VM without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.host.kernel import IommuUnit
from harness.host.pci import PciDevice
from harness.host.root import HostRoot

VIRTIO_VENDOR = "1af4"
# DMI strings that name a hypervisor (sys_vendor, product_name, bios_vendor).
HYPERVISOR_DMI_NAMES = {
    "QEMU": "QEMU",
    "KVM": "KVM",
    "VMware": "VMware",
    "Microsoft Corporation Virtual Machine": "Hyper-V",
    "Xen": "Xen",
    "innotek GmbH": "VirtualBox",
    "VirtualBox": "VirtualBox",
    "Amazon EC2": "Amazon EC2",
    "Google Compute Engine": "Google Compute Engine",
    "OpenStack": "OpenStack",
    "SeaBIOS": "QEMU/KVM (SeaBIOS)",
}
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "chassis_vendor")
# VT-d capability register, bit 7: Caching Mode (the hypervisor must see every invalidation).
CAP_CACHING_MODE = 1 << 7


@dataclass(frozen=True)
class VirtualMachine:
    """What says this host is a VM, and the facts about its emulated platform the checks care about."""

    hypervisor: str
    signs: tuple[str, ...]
    # Caching Mode per emulated VT-d unit (None: not an Intel unit or no cap register captured).
    caching_mode: dict[str, bool] = field(default_factory=dict)
    kvm_nested: str | None = None  # /sys/module/kvm_*/parameters/nested: "Y"/"1"/"N"/"0"

    def summary(self) -> str:
        return f"this host is a virtual machine ({self.hypervisor}: {'; '.join(self.signs)})"

    def note_for(self, check: str) -> str | None:
        """What being a VM means for one check's verdict, or None when it changes nothing there."""
        if check == "hardware_virtualization":
            if self.kvm_nested is None:
                return "nested host: KVM here needs nested virtualization from the hypervisor (kvm_* not loaded here)"
            enabled = self.kvm_nested in ("Y", "1")
            return f"nested host: kvm nested={self.kvm_nested}: guests started here " + (
                "may run KVM guests of their own"
                if enabled
                else "get no VT-x/AMD-V for KVM guests of their own"
            )
        if check in ("iommu_firmware", "iommu_kernel", "interrupt_remapping"):
            if not self.caching_mode:
                return "nested host: the IOMMU, if any, is emulated by the hypervisor"
            units = ", ".join(f"{name} CM={int(on)}" for name, on in self.caching_mode.items())
            if all(self.caching_mode.values()):
                return (
                    f"nested host: emulated VT-d with Caching Mode ({units}): every DMA mapping traps to the "
                    "hypervisor (slow map/unmap, correct isolation)"
                )
            return (
                f"nested host: emulated VT-d without Caching Mode ({units}): devices the hypervisor emulates "
                "can be bound to vfio-pci here and given to guests (DMA and interrupts measured in the lab); "
                "a physical device of the outer host is never behind this VT-d (QEMU starts vfio-pci behind "
                "an emulated VT-d only with caching-mode=on), so to pass one through to guests here, start this VM "
                "with intel-iommu,caching-mode=on"
            )
        if check == "vfio_ready":
            return "nested host: devices assigned here are themselves emulated or assigned by the hypervisor"
        return None


def detect_virtual_machine(
    root: HostRoot, cpu_flags: set[str], devices: list[PciDevice], units: list[IommuUnit]
) -> VirtualMachine | None:
    signs: list[str] = []
    hypervisor = ""
    if "hypervisor" in cpu_flags:
        signs.append("CPU flag hypervisor")
    for name in DMI_FIELDS:
        value = root.read_stripped(f"/sys/class/dmi/id/{name}") or ""
        match = next((label for key, label in HYPERVISOR_DMI_NAMES.items() if key in value), None)
        if match:
            signs.append(f"DMI {name}: {value}")
            hypervisor = hypervisor or match
    virtio = [str(device.address) for device in devices if device.vendor_id == VIRTIO_VENDOR]
    if virtio:
        signs.append(f"virtio devices: {', '.join(virtio[:4])}{' ...' if len(virtio) > 4 else ''}")
    if not signs:
        return None
    caching = {}
    for unit in units:
        cap = root.read_hex(f"/sys/class/iommu/{unit.name}/intel-iommu/cap")
        if cap is not None:
            caching[unit.name] = bool(cap & CAP_CACHING_MODE)
    nested = next(
        (
            setting
            for module in ("kvm_intel", "kvm_amd")
            if (setting := root.read_stripped(f"/sys/module/{module}/parameters/nested")) is not None
        ),
        None,
    )
    return VirtualMachine(hypervisor or "unknown hypervisor", tuple(signs), caching, nested)
