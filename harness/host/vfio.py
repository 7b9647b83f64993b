"""The functional VFIO proof: open a device's group the way QEMU does and report the kernel's answer.

No static test says whether assignment will work; the kernel does, when it is asked: open the container
and the group, check the group is viable, attach it to the container, choose the type1 IOMMU, and get a
device fd. Where interrupt remapping is missing and unsafe interrupts are not allowed, ``VFIO_SET_IOMMU``
fails with EPERM: the proof and the ``interrupt_remapping`` check must then agree.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass, field

# <linux/vfio.h>: _IO(VFIO_TYPE, VFIO_BASE + n), VFIO_TYPE is ';' and VFIO_BASE is 100.
_VFIO = ord(";") << 8
VFIO_GET_API_VERSION = _VFIO | 100
VFIO_CHECK_EXTENSION = _VFIO | 101
VFIO_SET_IOMMU = _VFIO | 102
VFIO_GROUP_GET_STATUS = _VFIO | 103
VFIO_GROUP_SET_CONTAINER = _VFIO | 104
VFIO_GROUP_UNSET_CONTAINER = _VFIO | 105
VFIO_GROUP_GET_DEVICE_FD = _VFIO | 106
VFIO_DEVICE_GET_INFO = _VFIO | 107
VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1V2_IOMMU = 3
VFIO_GROUP_FLAGS_VIABLE = 1


@dataclass
class VfioProof:
    """Each step the kernel was asked, and the first one it refused (None when every step worked)."""

    device: str
    group: int
    steps: list[str] = field(default_factory=list)
    refused_at: str | None = None
    error: str | None = None
    errno: int | None = None

    @property
    def works(self) -> bool:
        return self.refused_at is None

    @property
    def interrupt_remapping_refused(self) -> bool:
        return self.refused_at == "VFIO_SET_IOMMU" and self.errno == errno.EPERM

    def explain(self) -> str:
        done = " -> ".join(self.steps)
        if self.works:
            return f"VFIO works for {self.device} (group {self.group}): {done}"
        hint = ""
        if self.interrupt_remapping_refused:
            hint = (
                "; the kernel refuses type1 without interrupt remapping (see dmesg: "
                "'No interrupt remapping support'): enable it in firmware/QEMU (intremap=on), or accept "
                "the risk with vfio_iommu_type1.allow_unsafe_interrupts=1"
            )
        return f"VFIO refused {self.device} (group {self.group}) at {self.refused_at}: {self.error}{hint} [{done}]"


def prove_vfio(device: str, group: int, dev_root: str = "/dev/vfio") -> VfioProof:
    """Ask the kernel for ``device`` (bound to vfio-pci) the way QEMU does; never raises for a refusal."""
    proof = VfioProof(device, group)
    fds: list[int] = []

    def step(name: str, call: object) -> int | None:
        assert callable(call)
        try:
            result = int(call())
        except OSError as exc:
            proof.refused_at, proof.error, proof.errno = (
                name,
                f"{exc.strerror} (errno {exc.errno})",
                exc.errno,
            )
            return None
        proof.steps.append(name)
        return result

    try:
        container = step("open container", lambda: os.open(f"{dev_root}/vfio", os.O_RDWR))
        if container is None:
            return proof
        fds.append(container)
        if (
            step("VFIO_GET_API_VERSION", lambda: fcntl.ioctl(container, VFIO_GET_API_VERSION))
            != VFIO_API_VERSION
        ):
            proof.refused_at = proof.refused_at or "VFIO_GET_API_VERSION"
            proof.error = proof.error or "unknown VFIO API version"
            return proof
        iommu_type = VFIO_TYPE1V2_IOMMU
        if not fcntl.ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1V2_IOMMU):
            iommu_type = VFIO_TYPE1_IOMMU
        group_fd = step("open group", lambda: os.open(f"{dev_root}/{group}", os.O_RDWR))
        if group_fd is None:
            return proof
        fds.append(group_fd)
        status = bytearray(struct.pack("II", 8, 0))
        if (
            step("VFIO_GROUP_GET_STATUS", lambda: fcntl.ioctl(group_fd, VFIO_GROUP_GET_STATUS, status, True))
            is None
        ):
            return proof
        if not struct.unpack("II", status)[1] & VFIO_GROUP_FLAGS_VIABLE:
            proof.refused_at = "VFIO_GROUP_GET_STATUS"
            proof.error = "group is not viable: bind every endpoint of the group to vfio-pci (or no driver)"
            return proof
        container_arg = bytearray(struct.pack("i", container))
        if (
            step(
                "VFIO_GROUP_SET_CONTAINER",
                lambda: fcntl.ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, container_arg, True),
            )
            is None
        ):
            return proof
        if step("VFIO_SET_IOMMU", lambda: fcntl.ioctl(container, VFIO_SET_IOMMU, iommu_type)) is None:
            return proof
        name = bytearray(device.encode() + b"\0")
        device_fd = step(
            "VFIO_GROUP_GET_DEVICE_FD", lambda: fcntl.ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, name, True)
        )
        if device_fd is None:
            return proof
        fds.append(device_fd)
        info = bytearray(struct.pack("IIII", 16, 0, 0, 0))
        if (
            step("VFIO_DEVICE_GET_INFO", lambda: fcntl.ioctl(device_fd, VFIO_DEVICE_GET_INFO, info, True))
            is not None
        ):
            _argsz, _flags, regions, irqs = struct.unpack("IIII", info)
            proof.steps[-1] += f" ({regions} regions, {irqs} irqs)"
        return proof
    finally:
        for fd in reversed(fds):
            os.close(fd)
