"""Process probes of the host: a guest's QEMU pid (libvirt's pid file), how many files a process holds
open, and the nodes of ``/dev/vfio``. Readers only; what they find is compared before and after a change."""

from __future__ import annotations

import os
from pathlib import Path


def qemu_pid(name: str) -> int | None:
    """The QEMU process of a running guest, from libvirt's pid file (local libvirtd only)."""
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def open_fd_count(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def vfio_nodes() -> list[str]:
    """Entries of /dev/vfio: one per IOMMU group bound to vfio-pci, plus the container node."""
    try:
        return sorted(os.listdir("/dev/vfio"))
    except OSError:
        return []
