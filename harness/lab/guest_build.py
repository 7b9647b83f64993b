"""The lab builds the answering guest's image on L0, where the kernel cache is: the uncompressed kernel and a
busybox initramfs with the guest's ``/init`` (:mod:`harness.guest`), once per kernel, busybox and init."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import tempfile
from pathlib import Path

from harness.guest.image import APPLETS, GUEST_KERNEL_ARGS, IMAGE_FILE, GuestImage, GuestImageError
from harness.guest.protocol import guest_init_text
from harness.lab.kernel import BUSYBOX, KernelImage, write_cpio


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
