"""The answering guest's image: the lab's Debian kernel and a busybox initramfs whose ``/init`` reports the
guest's PCI tree (:mod:`harness.guest.protocol`), and the kernel command line that makes it do so.

Proving a live detach needs a guest OS that acknowledges the unplug (PCIe native hotplug or ACPI); Debian's
kernel has pciehp, acpiphp and the 8250 serial console built in, so the initramfs needs no module at all:
just busybox and the ``/init`` of :func:`harness.guest.protocol.guest_init_text`.

The image lives under ``<cache>/guest-image/<digest>/`` with an ``image.json`` naming the kernel, the
initramfs and the kernel command line; the lab builds it on L0 (:mod:`harness.lab.guest_build`, where the
kernel cache is) and L1 sees the same path through its read-only root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessEnvironmentError

IMAGE_FILE = "image.json"
GUEST_IMAGE_ENV = "HARNESS_GUEST_IMAGE"
# Only what /init uses: symlinks in the cpio instead of ``busybox --install`` at every boot.
APPLETS = ("sh", "mount", "sleep", "mkdir")
# Chosen by measurement in L1 (TCG inside TCG), see the module's boot-time notes in the hotplug suite.
GUEST_KERNEL_ARGS = (
    "console=ttyS0,115200",
    "quiet",
    "loglevel=1",
    "panic=-1",
    "mitigations=off",
    "nokaslr",
    "tsc=reliable",
    "no_timer_check",
    "cryptomgr.notests",
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "random.trust_cpu=on",
)


class GuestImageError(HarnessEnvironmentError):
    """The guest image could not be built or read; the message names the file or command."""


@dataclass(frozen=True)
class GuestImage:
    """A bootable kernel + initramfs pair and the command line that makes its ``/init`` report."""

    kernel: Path
    initramfs: Path
    cmdline: str

    def to_json(self) -> dict[str, str]:
        return {"kernel": str(self.kernel), "initramfs": str(self.initramfs), "cmdline": self.cmdline}

    @classmethod
    def load(cls, directory: Path) -> GuestImage:
        """Read ``image.json`` of a built image; both files it names must exist."""
        path = directory / IMAGE_FILE
        try:
            data = json.loads(path.read_text())
            image = cls(Path(data["kernel"]), Path(data["initramfs"]), str(data["cmdline"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GuestImageError(f"no usable guest image at {path}: {exc}") from None
        for file in (image.kernel, image.initramfs):
            if not file.is_file():
                raise GuestImageError(f"guest image {path} names {file}, which is missing")
        return image
