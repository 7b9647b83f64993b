"""The nested host's kernel (Debian's amd64 package) and its busybox initramfs, both cached and reused.

The kernel is fetched with ``apt-get download``, unpacked with ``dpkg-deb -x`` and indexed with ``depmod -b``
under ``<cache>/kernel/<package>/``. The initramfs holds busybox-static and just the modules needed to
mount L0's root over virtio-9p with a tmpfs overlay; it then switches to ``/run/hostdev-lab/init`` from the
lab's own (read-only) share, so per-lab settings never require rebuilding it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessEnvironmentError
from harness.progress import Progress

KERNEL_PACKAGE_ENV = "HOSTDEV_LAB_KERNEL_PACKAGE"
KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")

# Modules the initramfs needs to reach L0's root (virtio transport, 9p, overlayfs) and to bring up the
# lab network itself: insmod from the cpio is much faster than kmod reading modules over 9p in TCG.
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net")
# The user-mode network between L0 and L1 (QEMU's slirp defaults).
GUEST_IP = "10.0.2.15"
GUEST_GATEWAY = "10.0.2.2"

# 9p tags the QEMU command line and the guest scripts agree on.
ROOT_TAG = "hostroot"
LAB_TAG = "hostdevlab"
REPORTS_TAG = "reports"
QEMU_CACHE_TAG = "qemucache"
GUEST_LAB_DIR = "/run/hostdev-lab"
NINEP_MSIZE = 512 * 1024

PROBE_ARG = "hostdev_lab.probe=1"
# Kernel argument (and L0 setting) for the 9p cache mode of L1's root: loose (fast) or none (always fresh).
ROOT_CACHE_ARG = "hostdev_lab.rootcache"
ROOT_CACHE_ENV = "HOSTDEV_LAB_ROOT_CACHE"
PROBE_MARKER = "HOSTDEV-LAB-PROBE-OK"
BOOT_FAILED_MARKER = "HOSTDEV-LAB-BOOT-FAILED"

Log = Callable[[str], None]


class KernelError(HarnessEnvironmentError):
    """The kernel or initramfs could not be prepared; the message says which command failed."""


@dataclass(frozen=True)
class KernelImage:
    package: str
    release: str
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KernelError(f"{argv[0]} is not installed (needed to build the lab kernel)") from None
    if result.returncode != 0:
        raise KernelError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def kernel_package_name() -> str:
    """The versioned image package (``linux-image-6.1.0-N-amd64``) that ``linux-image-amd64`` depends on."""
    if pinned := os.environ.get(KERNEL_PACKAGE_ENV):
        return pinned
    for attempt in range(2):
        if attempt:  # a fresh machine may have no package lists yet
            _run(["apt-get", "update", "-qq"])
        try:
            output = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
        except KernelError:
            continue
        for line in output.splitlines():
            parts = line.strip().split()
            if len(parts) == 2 and parts[0] == "Depends:" and parts[1].startswith("linux-image-"):
                return parts[1]
    raise KernelError(
        f"`apt-cache depends {KERNEL_META_PACKAGE}` names no linux-image package "
        "(run `apt-get update` first, or set HOSTDEV_LAB_KERNEL_PACKAGE)"
    )


def _package_size(package: str) -> int | None:
    """The .deb's size from apt's package lists, to say how much a download is (None when unknown)."""
    try:
        shown = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return None
    for line in shown.splitlines():
        if line.startswith("Size:") and line.split()[-1].isdigit():
            return int(line.split()[-1])
    return None


def download_debs(packages: list[str], scratch_dir: Path) -> list[Path]:
    """``apt-get download`` the packages into ``scratch_dir`` (saying how far it is); their .deb files.

    Nothing is installed: the lab unpacks them (``dpkg-deb -x``) into its cache.
    """
    os.chmod(scratch_dir, 0o755)  # apt's _apt user writes the download here
    sizes = [_package_size(package) for package in packages]
    total = None if None in sizes else sum(size or 0 for size in sizes)
    argv = ["apt-get", "download", "-q", *packages]
    with Progress(
        f"downloading {' '.join(packages)} with apt-get",
        prefix="hostdev-lab",
        total_bytes=total,
        bytes_done=lambda: sum(f.stat().st_size for f in scratch_dir.rglob("*") if f.is_file()),
    ):
        try:
            _run(argv, cwd=scratch_dir)
        except KernelError:  # stale package lists name a version the archive no longer has
            _run(["apt-get", "update", "-qq"])
            _run(argv, cwd=scratch_dir)
    debs = sorted(scratch_dir.glob("*.deb"))
    if len(debs) < len(packages):
        raise KernelError(f"`{' '.join(argv)}` produced {len(debs)} .deb file(s) in {scratch_dir}")
    return debs


def ensure_kernel(cache: Path, log: Log = print) -> KernelImage:
    """Return the cached kernel, fetching and unpacking it the first time."""
    kernel_root = cache / "kernel"
    current = kernel_root / "current.json"
    if current.exists() and KERNEL_PACKAGE_ENV not in os.environ:
        meta = json.loads(current.read_text())
        image = KernelImage(meta["package"], meta["release"], Path(meta["root"]))
        if image.vmlinuz.exists() and (image.modules_dir / "modules.dep").exists():
            return image
    package = kernel_package_name()
    release = package.removeprefix("linux-image-")
    image = KernelImage(package, release, kernel_root / package)
    if not (image.vmlinuz.exists() and (image.modules_dir / "modules.dep").exists()):
        log(f"hostdev-lab: fetching {package} (first run; cached under {kernel_root})")
        kernel_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=kernel_root, prefix=".download-") as scratch:
            scratch_dir = Path(scratch)
            debs = download_debs([package], scratch_dir)
            unpacked = scratch_dir / "root"
            _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
            _run(["depmod", "-b", str(unpacked), release])
            shutil.rmtree(image.root, ignore_errors=True)
            unpacked.rename(image.root)
    current.write_text(json.dumps({"package": package, "release": release, "root": str(image.root)}))
    return image


def _module_files(kernel: KernelImage) -> list[Path]:
    """Module files in load order (dependencies first), built-ins skipped."""
    ordered: list[Path] = []
    for module in INITRAMFS_MODULES:
        output = _run(["modprobe", "-d", str(kernel.root), "-S", kernel.release, "--show-depends", module])
        for line in output.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in ordered:
                    ordered.append(path)
    return ordered


def initramfs_init_text() -> str:
    """/init of the initramfs: mount L0's root read-only over 9p with a tmpfs overlay and switch to it."""
    ninep = f"trans=virtio,version=9p2000.L,msize={NINEP_MSIZE}"
    return f"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /lower /upper /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {{ echo "hostdev-lab initramfs: $*"; echo {BOOT_FAILED_MARKER}; sleep 1; poweroff -f; }}
for module in $(cat /modules.order); do insmod "/modules/$module" || fail "insmod $module"; done
if grep -q {PROBE_ARG} /proc/cmdline; then echo {PROBE_MARKER}; poweroff -f; fi
# Only virtio_net is loaded yet, so eth0 is the lab's own NIC; net.ifnames=0 keeps that name.
ip link set lo up
ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up && ip route add default via {GUEST_GATEWAY} \
    || fail "cannot configure eth0"
# cache=loose (default) is fast but may show files changed on L0 after boot stale; see ROOT_CACHE_ENV.
rootcache=loose
for arg in $(cat /proc/cmdline); do case "$arg" in {ROOT_CACHE_ARG}=*) rootcache="${{arg#*=}}";; esac; done
mount -t 9p -o {ninep},ro,cache=$rootcache {ROOT_TAG} /lower || fail "cannot mount the {ROOT_TAG} 9p share"
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot \\
    || fail "cannot mount the overlay root"
mount -t tmpfs -o mode=0755 run /newroot/run
mkdir -p /newroot{GUEST_LAB_DIR}
mount -t 9p -o {ninep},ro,cache=none {LAB_TAG} /newroot{GUEST_LAB_DIR} || fail "cannot mount the lab share"
root=/newroot
[ -f /newroot{GUEST_LAB_DIR}/early.sh ] && . /newroot{GUEST_LAB_DIR}/early.sh
for fs in dev proc sys; do mount --move /$fs /newroot/$fs; done
exec switch_root /newroot /bin/sh {GUEST_LAB_DIR}/init
"""


def ensure_initramfs(kernel: KernelImage, cache: Path) -> Path:
    """Build (once per kernel, module list, init script and busybox) the cpio initramfs."""
    modules = _module_files(kernel)
    init_text = initramfs_init_text()
    digest = hashlib.sha256()
    digest.update(init_text.encode())
    digest.update(kernel.release.encode())
    digest.update(BUSYBOX.read_bytes())
    for module in modules:
        digest.update(module.name.encode())
    target = cache / "initramfs" / f"initramfs-{kernel.release}-{digest.hexdigest()[:16]}.cpio"
    if target.exists():
        return target
    if not BUSYBOX.exists():
        raise KernelError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hostdev-lab-initramfs-") as scratch:
        tree = Path(scratch)
        (tree / "bin").mkdir()
        (tree / "modules").mkdir()
        shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
        for module in modules:
            shutil.copy2(module, tree / "modules" / module.name)
        (tree / "modules.order").write_text("".join(f"{module.name}\n" for module in modules))
        init = tree / "init"
        init.write_text(init_text)
        init.chmod(0o755)
        write_cpio(tree, target)
    return target


def write_cpio(tree: Path, target: Path) -> None:
    """Pack ``tree`` into a newc cpio archive (an initramfs) at ``target``, atomically."""
    names = sorted(str(path.relative_to(tree)) for path in tree.rglob("*"))
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        try:
            result = subprocess.run(
                ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
                cwd=tree,
                input="\n".join(names).encode(),
                stdout=out,
                stderr=subprocess.PIPE,
                check=False,
            )
        except FileNotFoundError:
            raise KernelError("cpio is not installed (Debian: apt-get install cpio)") from None
    if result.returncode != 0:
        raise KernelError(f"cpio failed building {target}: {result.stderr.decode(errors='replace')}")
    partial.rename(target)
