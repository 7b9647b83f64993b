"""A small guest that answers: the lab's Debian kernel and a busybox initramfs that reports its PCI tree.

Proving a live detach needs a guest OS that acknowledges the unplug (PCIe native hotplug or ACPI); Debian's
kernel has pciehp, acpiphp and the 8250 serial console built in, so the initramfs needs no module at all:
just busybox and an ``/init`` that prints the guest's own PCI devices on its serial console whenever they
change. The harness reads those lines (see :mod:`harness.libvirt.hotplug`).

Line format, one per change (the first one also means "booted")::

    HOSTDEV-GUEST-PCI <seq> <uptime> 0000:00:00.0=8086:29c0 0000:00:01.0=1af4:1000 ...

The image lives under ``<cache>/guest-image/<digest>/`` with an ``image.json`` naming the kernel, the
initramfs and the kernel command line; the lab builds it on L0 (where the kernel cache is) and L1 sees the
same path through its read-only root.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessEnvironmentError
from harness.lab.kernel import BUSYBOX, KernelImage, write_cpio

IMAGE_FILE = "image.json"
GUEST_IMAGE_ENV = "HARNESS_GUEST_IMAGE"
PCI_REPORT_MARKER = "HOSTDEV-GUEST-PCI"
# Seconds between two looks at /sys/bus/pci/devices: the loop uses shell builtins only (no fork but sleep).
POLL_INTERVAL_S = 0.5
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


def guest_init_text() -> str:
    """/init: mount sysfs, then report the PCI tree on the console each time it changes. Never exits."""
    return f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
seq=0
last=
while :; do
    list=
    for dev in /sys/bus/pci/devices/*; do
        [ -r "$dev/vendor" ] || continue
        read vendor < "$dev/vendor"
        read device < "$dev/device"
        list="$list ${{dev##*/}}=${{vendor#0x}}:${{device#0x}}"
    done
    if [ "$list" != "$last" ]; then
        seq=$((seq + 1))
        read uptime idle < /proc/uptime
        echo "{PCI_REPORT_MARKER} $seq $uptime$list"
        last=$list
    fi
    sleep {POLL_INTERVAL_S}
done
"""


def _xz_payload(vmlinuz: Path) -> bytes:
    """The uncompressed ELF ``vmlinux`` inside a bzImage (Debian compresses with xz)."""
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise GuestImageError(f"{vmlinuz} holds no xz payload (not a Debian bzImage?)")
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    payload = decompressor.decompress(data[start:])
    if not payload.startswith(b"\x7fELF"):
        raise GuestImageError(f"the xz payload of {vmlinuz} is not an ELF vmlinux")
    return payload


def ensure_guest_image(kernel: KernelImage, cache: Path, *, pvh: bool = True) -> Path:
    """Build (once per kernel, busybox and init script) the guest image; return its directory.

    ``pvh`` boots the uncompressed ELF vmlinux through QEMU's PVH entry, skipping the xz decompression
    that costs seconds under TCG inside TCG.
    """
    if not BUSYBOX.exists():
        raise GuestImageError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
    init_text = guest_init_text()
    cmdline = " ".join(GUEST_KERNEL_ARGS)
    digest = hashlib.sha256()
    for part in (init_text, cmdline, kernel.release, str(pvh), ",".join(APPLETS)):
        digest.update(part.encode() + b"\0")
    digest.update(BUSYBOX.read_bytes())
    directory = cache / "guest-image" / f"{kernel.release}-{digest.hexdigest()[:16]}"
    if (directory / IMAGE_FILE).exists():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".build-") as scratch:
        build = Path(scratch) / "image"
        tree = Path(scratch) / "tree"
        build.mkdir()
        for sub in ("bin", "proc", "sys", "dev"):
            (tree / sub).mkdir(parents=True)
        shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
        for applet in APPLETS:
            (tree / "bin" / applet).symlink_to("busybox")
        init = tree / "init"
        init.write_text(init_text)
        init.chmod(0o755)
        write_cpio(tree, build / "initramfs.cpio")
        kernel_file = build / ("vmlinux" if pvh else "vmlinuz")
        if pvh:
            kernel_file.write_bytes(_xz_payload(kernel.vmlinuz))
        else:
            shutil.copy2(kernel.vmlinuz, kernel_file)
        image = GuestImage(directory / kernel_file.name, directory / "initramfs.cpio", cmdline)
        (build / IMAGE_FILE).write_text(json.dumps(image.to_json(), indent=2) + "\n")
        for path in (build, *build.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        try:
            build.rename(directory)
        except OSError:  # another process built the same image first
            if not (directory / IMAGE_FILE).exists():
                raise
    return directory
