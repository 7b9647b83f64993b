"""The scripts L1 runs after the initramfs switched to L0's root: written per lab into its state dir.

The state dir is L1's read-only ``/run/hostdev-lab``: ``init`` (PID 1) installs an inittab and becomes
busybox init (it reaps orphans); init runs ``stage2.sh``, which brings up udev, vfio-pci, the exec agent,
virtlogd and a libvirtd listening on TCP, without waiting for udev to settle everything first.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.lab.devices import l1_drivers
from harness.lab.kernel import (
    BOOT_FAILED_MARKER,
    GUEST_IP,
    GUEST_LAB_DIR,
    NINEP_MSIZE,
    QEMU_CACHE_TAG,
    REPORTS_TAG,
    KernelImage,
)
from harness.lab.qemu import GUEST_AGENT_PORT
from harness.libvirt.daemon import write_config

AGENT_SCRIPT = Path(__file__).resolve().with_name("guest_agent.py")
GUEST_QEMU_CACHE = "/var/cache/libvirt/qemu"
# Emulated q35 chipset parts and CPU-feature modules nothing in the lab uses: udev would load each one
# (slow under TCG). Blacklisting only stops alias-based autoloading; modprobe by name still works.
UNUSED_MODULES = (
    "ahci", "libahci", "ata_piix", "ata_generic", "lpc_ich", "i2c_i801", "iTCO_wdt", "intel_pmc_bxt",
    "pcspkr", "psmouse", "serio_raw", "evdev", "joydev", "aesni_intel", "crc32_pclmul", "crc32c_intel",
    "ghash_clmulni_intel", "sha512_ssse3", "sha256_ssse3", "sha1_ssse3", "ccp", "qemu_fw_cfg", "sg",
    "sr_mod", "intel_rapl_msr", "rapl", "powernow_k8", "acpi_cpufreq", "edac_core", "amd64_edac",
    # KVM on TCG's emulated SVM once locked up L1's kernel (both vCPUs spinning in ring 0) while the
    # harness's KVM probe ran; L2 guests run under TCG anyway.
    "kvm_amd", "kvm_intel", "kvm",
)  # fmt: skip

INIT = f"""#!/bin/sh
cp {GUEST_LAB_DIR}/inittab /etc/inittab
exec /bin/busybox init
"""

INITTAB = f"""::sysinit:/bin/sh {GUEST_LAB_DIR}/stage2.sh
::ctrlaltdel:/bin/busybox poweroff -f
"""


def early_text(name: str, kernel: KernelImage, reports_dir: Path) -> str:
    """Sourced by the initramfs's busybox sh before switch_root (``$root`` is the new root): static busybox
    applets from RAM are much faster under TCG than the root's dynamically linked tools read over 9p."""
    q = shlex.quote
    ninep = f"trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=none"
    modules = f"/lib/modules/{kernel.release}"
    reports = q(str(reports_dir))
    # A clean tmpfs /tmp and /var/tmp, except where the checkout lives below them (a CI clone in /tmp):
    # there the overlay root (a tmpfs upper) keeps them writable and the checkout visible.
    scratch = " ".join(d for d in ("/tmp", "/var/tmp") if not reports_dir.is_relative_to(d))
    return f"""# hostdev-lab early setup for lab {name}: written by L0, read-only here.
echo {q("lab-" + name)} > /proc/sys/kernel/hostname
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/run/libvirt" "$root{GUEST_QEMU_CACHE}" "$root{modules}"
for dir in {scratch}; do mount -t tmpfs -o mode=1777 tmpfs "$root$dir"; done
for dir in /var/lib/libvirt /var/log/libvirt; do mount -t tmpfs -o mode=0755 tmpfs "$root$dir"; done
mount -t 9p -o {ninep} {QEMU_CACHE_TAG} "$root{GUEST_QEMU_CACHE}" || echo "WARNING: cannot mount the qemu cache"
mount --bind "$root"{q(str(kernel.modules_dir))} "$root{modules}"
mkdir -p "$root"{reports}
mount -t 9p -o {ninep} {REPORTS_TAG} "$root"{reports} || echo "WARNING: cannot mount the reports share"
# A fresh libvirt: L0's config files, the lab's qemu.conf/libvirtd.conf, no domains, nothing autostarted.
rm -rf "$root"/etc/libvirt/qemu/*.xml "$root/etc/libvirt/qemu/autostart" \\
    "$root/etc/libvirt/qemu/networks/autostart" "$root/etc/libvirt/storage/autostart"
cp "$root{GUEST_LAB_DIR}/libvirt/qemu.conf" "$root{GUEST_LAB_DIR}/libvirt/libvirtd.conf" "$root/etc/libvirt/"
printf 'blacklist %s\\n' {" ".join(UNUSED_MODULES)} > "$root/etc/modprobe.d/hostdev-lab-unused.conf"
# L1 reaches nothing (restrict=on): with no name server a lookup fails at once instead of timing out
# (apt, which tmt runs on a connected host, waited minutes for each of L0's sources).
rm -f "$root/etc/resolv.conf"
echo "# hostdev-lab: L1 has no network beyond L0's loopback forwards" > "$root/etc/resolv.conf"
"""


def stage2_text(name: str, drivers: Sequence[str], python: str = sys.executable) -> str:
    q = shlex.quote
    return f"""#!/bin/sh
# hostdev-lab stage 2 for lab {name}: written by L0, read-only here.
say() {{ echo "hostdev-lab[$(cut -d' ' -f1 /proc/uptime)]: $*"; }}
say "stage2 start"
mkdir -p /dev/pts /dev/shm  # devtmpfs has neither; QEMU needs ptys for serial consoles
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# libvirtd first, at full priority: it is what L0 waits for, and it follows later devices through udev.
# If either exits, the marker makes L0 fail the boot at once, with this console in the error.
supervise() {{
    name=$1; shift
    ( "$@"; echo "{BOOT_FAILED_MARKER}: $name exited ($?)" ) </dev/null >/dev/console 2>&1 &
}}
supervise libvirtd setsid -w libvirtd --listen
setsid nice -n 5 virtlogd </dev/null >/dev/console 2>&1 &
supervise "the exec agent" setsid -w nice -n 5 {q(python)} -I -S {q(str(AGENT_SCRIPT))} {GUEST_IP} {GUEST_AGENT_PORT}
# The lab's sshd, when L0 wrote its start script (hostdev-lab up --ssh; see harness/lab/sshd.py).
if [ -f {GUEST_LAB_DIR}/sshd.sh ]; then supervise sshd setsid -w sh {GUEST_LAB_DIR}/sshd.sh; fi
say "libvirtd and agent started"
# Drivers and udev's coldplug run at the lowest priority so libvirtd and the agent answer first; the
# discovery step renices udevd once it has settled.
nice -n 19 sh -c 'modprobe vfio-pci || echo "hostdev-lab: vfio-pci did not load"; modprobe -a -q {" ".join(drivers)}' &
drivers=$!
nice -n 19 /lib/systemd/systemd-udevd --daemon
nice -n 19 udevadm trigger --type=subsystems --action=add
nice -n 19 udevadm trigger --type=devices --action=add
say "udev triggered"
wait $drivers
say "stage2 done"
"""


def write_guest_files(
    state_dir: Path, name: str, kernel: KernelImage, reports_dir: Path, device_models: Sequence[str]
) -> None:
    """Write init, inittab, early.sh, stage2.sh and libvirt's config into the state dir (L1's /run/hostdev-lab)."""
    # The test devices' drivers (see harness.lab.devices) are loaded up front rather than through udev's coldplug.
    drivers = ["virtio_balloon", *l1_drivers(device_models)]
    for file_name, text in (
        ("init", INIT),
        ("inittab", INITTAB),
        ("early.sh", early_text(name, kernel, reports_dir)),
        ("stage2.sh", stage2_text(name, drivers)),
    ):
        path = state_dir / file_name
        path.write_text(text)
        path.chmod(0o755)
    # L0 reaches this libvirtd only through the loopback port forward; the guest address is slirp-private.
    write_config(state_dir / "libvirt", tcp_listen_addr=GUEST_IP)
