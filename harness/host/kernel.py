"""Kernel facts: command line, modules, IOMMU units, ACPI tables, interrupt remapping, vfio parameters."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from functools import cached_property

from harness.host.root import HostRoot

# Where a snapshot keeps what the live host only offers through a device node (/dev/kmsg).
SNAPSHOT_DMESG = "/.harness/dmesg.txt"
# Intel VT-d extended capability register, bit 3: interrupt remapping supported.
ECAP_INTERRUPT_REMAPPING = 1 << 3
VFIO_MODULES = ("vfio", "vfio_pci", "vfio_iommu_type1")


def read_kernel_log(root: HostRoot) -> list[str]:
    """The kernel ring buffer as text lines (``/dev/kmsg`` needs no dmesg binary and no syslog)."""
    if not root.is_live:
        return (root.read_text(SNAPSHOT_DMESG) or "").splitlines()
    lines: list[str] = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return lines
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # a record was overwritten while reading: skip it
                    continue
                break  # EAGAIN: the end of the buffer
            _, _, message = record.partition(";")
            lines.append(message.split("\n", 1)[0])
    finally:
        os.close(fd)
    return lines


def parse_cmdline(text: str) -> dict[str, str]:
    """``intel_iommu=on iommu=pt quiet`` -> ``{'intel_iommu': 'on', 'iommu': 'pt', 'quiet': ''}``."""
    arguments: dict[str, str] = {}
    for token in text.split():
        if token == "--":
            break  # what follows is for init
        key, _, value = token.partition("=")
        arguments[key.replace("-", "_")] = value
    return arguments


@dataclass(frozen=True)
class IommuUnit:
    """One hardware IOMMU as the kernel registered it in /sys/class/iommu."""

    name: str
    vendor: str  # "intel", "amd" or "other"
    ecap: int | None = None

    @property
    def interrupt_remapping(self) -> bool | None:
        if self.ecap is None:
            return None
        return bool(self.ecap & ECAP_INTERRUPT_REMAPPING)


@dataclass
class KernelFacts:
    root: HostRoot
    log: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, root: HostRoot) -> KernelFacts:
        return cls(root=root, log=read_kernel_log(root))

    @cached_property
    def release(self) -> str:
        return self.root.read_stripped("/proc/sys/kernel/osrelease") or ""

    @cached_property
    def cmdline_text(self) -> str:
        return self.root.read_stripped("/proc/cmdline") or ""

    @cached_property
    def cmdline(self) -> dict[str, str]:
        return parse_cmdline(self.cmdline_text)

    @cached_property
    def acpi_tables(self) -> list[str]:
        return self.root.listdir("/sys/firmware/acpi/tables")

    @property
    def has_dmar(self) -> bool:
        return "DMAR" in self.acpi_tables

    @property
    def has_ivrs(self) -> bool:
        return "IVRS" in self.acpi_tables

    @cached_property
    def iommu_units(self) -> list[IommuUnit]:
        units = []
        for name in self.root.listdir("/sys/class/iommu"):
            ecap = self.root.read_hex(f"/sys/class/iommu/{name}/intel-iommu/ecap")
            if ecap is not None:
                units.append(IommuUnit(name, "intel", ecap))
            elif self.root.exists(f"/sys/class/iommu/{name}/amd-iommu"):
                units.append(IommuUnit(name, "amd"))
            else:
                units.append(IommuUnit(name, "other"))
        return units

    @property
    def firmware_iommu_vendor(self) -> str | None:
        """Decided from ACPI tables and registered units; CPU flags lie on nested hosts."""
        if self.has_dmar or any(unit.vendor == "intel" for unit in self.iommu_units):
            return "intel"
        if self.has_ivrs or any(unit.vendor == "amd" for unit in self.iommu_units):
            return "amd"
        return None

    @cached_property
    def iommu_group_count(self) -> int:
        return len(self.root.listdir("/sys/kernel/iommu_groups"))

    @cached_property
    def loaded_modules(self) -> set[str]:
        text = self.root.read_text("/proc/modules") or ""
        return {line.split()[0] for line in text.splitlines() if line.strip()}

    @cached_property
    def builtin_modules(self) -> set[str]:
        text = self.root.read_text(f"/lib/modules/{self.release}/modules.builtin") or ""
        return {_module_name(line) for line in text.splitlines() if line.strip()}

    @cached_property
    def available_modules(self) -> set[str]:
        text = self.root.read_text(f"/lib/modules/{self.release}/modules.dep") or ""
        return {_module_name(line.split(":", 1)[0]) for line in text.splitlines() if line.strip()}

    def module_state(self, module: str) -> str:
        """``loaded``, ``built-in``, ``available`` or ``missing``."""
        if module in self.loaded_modules:
            return "loaded"
        if module in self.builtin_modules:
            return "built-in"
        if module in self.available_modules:
            return "available"
        return "missing"

    @cached_property
    def blacklisted_modules(self) -> set[str]:
        listed = self.cmdline.get("module_blacklist", "")
        return {name.replace("-", "_") for name in listed.split(",") if name}

    def module_parameter(self, module: str, parameter: str) -> str | None:
        return self.root.read_stripped(f"/sys/module/{module}/parameters/{parameter}")

    @property
    def modules_disabled(self) -> bool:
        return "nomodule" in self.cmdline

    def log_lines(self, pattern: str) -> list[str]:
        expression = re.compile(pattern)
        return [line for line in self.log if expression.search(line)]

    def modprobe_lines(self) -> list[tuple[str, list[str], str]]:
        """Every directive in modprobe.d files: (file, words, stripped line)."""
        found = []
        for directory in ("/etc/modprobe.d", "/lib/modprobe.d", "/usr/lib/modprobe.d"):
            for name in self.root.listdir(directory):
                if name.endswith(".conf"):
                    for line in (self.root.read_text(f"{directory}/{name}") or "").splitlines():
                        if line.split() and not line.lstrip().startswith("#"):
                            found.append((f"{directory}/{name}", line.split(), line.strip()))
        return found

    def modprobe_options(self, module: str) -> list[tuple[str, str]]:
        """``options MODULE ...`` lines: (file, line)."""
        return [
            (path, line)
            for path, words, line in self.modprobe_lines()
            if len(words) >= 2 and words[0] == "options" and words[1].replace("-", "_") == module
        ]


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")
