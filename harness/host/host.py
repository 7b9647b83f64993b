"""A host, live or captured: one object the checks and the inventory read, wherever it runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from harness.host.bootloader import BootLoader
from harness.host.critical import find_host_critical
from harness.host.kernel import KernelFacts
from harness.host.kvm import KvmProbe, probe_kvm
from harness.host.limits import Limits
from harness.host.pci import PciInventory, enumerate_pci
from harness.host.root import HostRoot
from harness.libvirt.facts import LibvirtFacts

# What a snapshot stores that is not a file on the host (a probe's result, a libvirt answer).
SNAPSHOT_PROBES = "/.harness/probes.json"
SNAPSHOT_LIBVIRT = "/.harness/libvirt.json"
SNAPSHOT_HOSTNAME = "/proc/sys/kernel/hostname"


class Host:
    """Everything the harness knows about one host, read lazily from its root."""

    def __init__(
        self,
        root: HostRoot,
        *,
        libvirt_facts: Callable[[], LibvirtFacts] | None = None,
        refuse: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self._libvirt_facts = libvirt_facts
        self.refuse = refuse

    @classmethod
    def local(cls, **kwargs: object) -> Host:
        return cls(HostRoot("/"), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_snapshot(cls, path: str | Path, refuse: tuple[str, ...] = ()) -> Host:
        root = HostRoot(path)
        if not root.path.is_dir():
            raise FileNotFoundError(f"host snapshot {path} does not exist")
        return cls(root, refuse=refuse)

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
    def bootloader(self) -> BootLoader:
        return BootLoader.read(self.root)

    @cached_property
    def critical(self) -> dict[str, list[str]]:
        return find_host_critical(self.root, self.refuse)

    @cached_property
    def cpu_flags(self) -> set[str]:
        for line in (self.root.read_text("/proc/cpuinfo") or "").splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
        return set()

    @cached_property
    def kvm(self) -> KvmProbe:
        if self.root.is_live:
            return probe_kvm()
        probes = json.loads(self.root.read_text(SNAPSHOT_PROBES) or "{}")
        return KvmProbe(**probes.get("kvm", {"usable": False, "detail": "not recorded in this snapshot"}))

    @cached_property
    def libvirt(self) -> LibvirtFacts:
        if self._libvirt_facts is not None:
            return self._libvirt_facts()
        recorded = self.root.read_text(SNAPSHOT_LIBVIRT)
        if recorded is not None:
            return LibvirtFacts.from_json(recorded)
        return LibvirtFacts.unreachable("(none)", "no libvirt connection was given for this host")
