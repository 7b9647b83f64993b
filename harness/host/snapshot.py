"""Capture what the readers read from a host into a directory, to attach to a bug report or test against."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.host.host import SNAPSHOT_LIBVIRT, SNAPSHOT_PROBES, Host
from harness.host.kernel import SNAPSHOT_DMESG

# Plain files read by the host model (globs relative to /).
CAPTURED_FILES = (
    "proc/cmdline",
    "proc/modules",
    "proc/cpuinfo",
    "proc/consoles",
    "proc/self/limits",
    "proc/self/mounts",
    "proc/net/route",
    "proc/net/ipv6_route",
    "proc/sys/kernel/osrelease",
    "proc/sys/kernel/hostname",
    "proc/sys/fs/file-max",
    "etc/default/grub",
    "etc/sysconfig/grub",
    "etc/libvirt/qemu.conf",
    "etc/modprobe.d/*.conf",
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "etc/grub2.cfg",
    "etc/grub2-efi.cfg",
    "boot/efi/EFI/*/grub.cfg",
    "sys/class/iommu/*/intel-iommu/ecap",
    "sys/class/iommu/*/intel-iommu/cap",
    "sys/class/iommu/*/amd-iommu/cap",
    "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
)
PCI_ATTRIBUTES = (
    "vendor", "device", "class", "subsystem_vendor", "subsystem_device", "sriov_totalvfs", "sriov_numvfs",
    "reset_method", "driver_override", "boot_vga",
)  # fmt: skip
# Symlinks whose target's last component the readers use.
PCI_LINKS = ("driver", "iommu_group", "physfn")


def _copy_file(source: Path, target: Path) -> None:
    try:
        data = source.read_bytes()
    except OSError:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _mirror_link(live: Path, snapshot_root: Path) -> None:
    """Recreate a sysfs symlink inside the snapshot with the same relative target."""
    try:
        target = os.readlink(live)
    except OSError:
        return
    copy = snapshot_root / str(live).lstrip("/")
    copy.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(copy):
        copy.symlink_to(target)


def capture_snapshot(host: Host, destination: Path) -> Path:
    if not host.root.is_live:
        raise ValueError("a snapshot is taken of the live host")
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    live = Path("/")
    for pattern in CAPTURED_FILES:
        for source in live.glob(pattern):
            _copy_file(source, destination / str(source).lstrip("/"))
    release = host.kernel.release
    for name in ("modules.builtin", "modules.dep"):
        _copy_file(live / f"lib/modules/{release}/{name}", destination / f"lib/modules/{release}/{name}")
    for name in os.listdir("/sys/firmware/acpi/tables") if os.path.isdir("/sys/firmware/acpi/tables") else []:
        (destination / "sys/firmware/acpi/tables").mkdir(parents=True, exist_ok=True)
        (destination / "sys/firmware/acpi/tables" / name).touch()  # the readers only ask which tables exist
    # Links rather than empty folders, which git would drop from a committed snapshot.
    for member in live.glob("sys/kernel/iommu_groups/*/devices/*"):
        _mirror_link(member, destination)
    if os.path.exists("/dev/vfio/vfio"):
        (destination / "dev/vfio").mkdir(parents=True, exist_ok=True)
        (destination / "dev/vfio/vfio").touch()
    for device in host.pci:
        sys_path = Path(device.sys_path)
        _mirror_link(Path(f"/sys/bus/pci/devices/{device.address}"), destination)
        for attribute in PCI_ATTRIBUTES:
            _copy_file(sys_path / attribute, destination / str(sys_path).lstrip("/") / attribute)
        for link in (*PCI_LINKS, *(f"virtfn{i}" for i in range(len(device.virtfns)))):
            _mirror_link(sys_path / link, destination)
    for link_dir in ("sys/class/net", "sys/class/block", "sys/class/tty"):
        for entry in (live / link_dir).glob("*"):
            _mirror_link(entry, destination)  # its target path names the PCI device behind it
    for entry in (live / "sys/bus/virtio/devices").glob("*"):
        _mirror_link(entry, destination)
        real = entry.resolve()
        for attribute in ("device", "mount_tag"):
            _copy_file(real / attribute, destination / str(real).lstrip("/") / attribute)
    probes = {"kvm": {"usable": host.kvm.usable, "detail": host.kvm.detail}}
    (destination / SNAPSHOT_PROBES.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (destination / SNAPSHOT_PROBES.lstrip("/")).write_text(json.dumps(probes, indent=2) + "\n")
    (destination / SNAPSHOT_LIBVIRT.lstrip("/")).write_text(host.libvirt.to_json() + "\n")
    (destination / SNAPSHOT_DMESG.lstrip("/")).write_text("\n".join(host.kernel.log) + "\n")
    return destination
