"""A host, live or captured: one object the checks and the inventory read, wherever it runs."""

from __future__ import annotations

from functools import cached_property
from types import TracebackType

from harness.host.backends import HostBackend
from harness.host.bootloader import BootConfiguration, read_boot_configuration
from harness.host.critical import find_host_critical
from harness.host.kernel import KernelFacts
from harness.host.kvm import KvmProbe
from harness.host.libvirt_facts import LibvirtFacts
from harness.host.limits import Limits
from harness.host.pci import PciInventory, enumerate_pci
from harness.host.virt import VirtualMachine, detect_virtual_machine
from harness.xml.address import PciAddress

SNAPSHOT_HOSTNAME = "/proc/sys/kernel/hostname"


class Host:
    """Everything the harness knows about one host, read lazily through its backend.

    Open one with ``harness.opening.open_host``; close it (or use it as a context manager) to stop what the backend
    started for it, such as a private libvirtd.
    """

    def __init__(self, backend: HostBackend, *, refuse: tuple[PciAddress, ...] = ()) -> None:
        self.backend = backend
        self.root = backend.root
        self.refuse = refuse

    @property
    def is_live(self) -> bool:
        return self.backend.is_live

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Host({self.name!r}, root={str(self.root.path)!r})"

    def refresh_devices(self) -> None:
        """Forget what was read of PCI devices: after VFs come or go, or a hotplug."""
        for name in ("pci", "critical"):
            self.__dict__.pop(name, None)

    @cached_property
    def name(self) -> str:
        return self.root.read_stripped(SNAPSHOT_HOSTNAME) or "unknown"

    @cached_property
    def kernel(self) -> KernelFacts:
        return KernelFacts.read(self.root)

    @cached_property
    def pci(self) -> PciInventory:
        return PciInventory(enumerate_pci(self.root))

    @cached_property
    def limits(self) -> Limits:
        return Limits.read(self.root)

    @cached_property
    def bootloader(self) -> BootConfiguration:
        return read_boot_configuration(self.root)

    @cached_property
    def critical(self) -> dict[PciAddress, list[str]]:
        return find_host_critical(self.root, self.refuse)

    @cached_property
    def cpu_flags(self) -> set[str]:
        for line in (self.root.read_text("/proc/cpuinfo") or "").splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
        return set()

    @cached_property
    def virtual_machine(self) -> VirtualMachine | None:
        """Set when this host is itself a VM (a nested host); None on bare metal."""
        return detect_virtual_machine(self.root, self.cpu_flags, list(self.pci), self.kernel.iommu_units)

    @cached_property
    def kvm(self) -> KvmProbe:
        return self.backend.kvm_probe()

    @cached_property
    def libvirt(self) -> LibvirtFacts:
        return self.backend.libvirt_facts()
