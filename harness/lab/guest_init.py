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

from harness.lab.kernel import GUEST_LAB_DIR, NINEP_MSIZE, QEMU_CACHE_TAG, REPORTS_TAG, KernelImage
from harness.lab.qemu import GUEST_AGENT_PORT, GUEST_IP, LAB_NIC_MAC
from harness.libvirt.daemon import write_config

AGENT_SCRIPT = Path(__file__).resolve().with_name("guest_agent.py")
GUEST_QEMU_CACHE = "/var/cache/libvirt/qemu"
# Drivers of the lab's test devices by QEMU model, loaded up front rather than through udev's coldplug.
DRIVER_OF_MODEL = {"nvme": "nvme", "e1000e": "e1000e", "e1000": "e1000", "igb": "igb", "rtl8139": "8139cp"}
# Emulated q35 chipset parts and CPU-feature modules nothing in the lab uses: udev would load each one
# (slow under TCG). Blacklisting only stops alias-based autoloading; modprobe by name still works.
UNUSED_MODULES = (
    "ahci", "libahci", "ata_piix", "ata_generic", "lpc_ich", "i2c_i801", "iTCO_wdt", "intel_pmc_bxt",
    "pcspkr", "psmouse", "serio_raw", "evdev", "joydev", "aesni_intel", "crc32_pclmul", "crc32c_intel",
    "ghash_clmulni_intel", "sha512_ssse3", "sha256_ssse3", "sha1_ssse3", "ccp", "qemu_fw_cfg", "sg",
    "sr_mod", "intel_rapl_msr", "rapl", "powernow_k8", "acpi_cpufreq", "edac_core", "amd64_edac",
)  # fmt: skip

INIT = f"""#!/bin/sh
cp {GUEST_LAB_DIR}/inittab /etc/inittab
exec /bin/busybox init
"""

INITTAB = f"""::sysinit:/bin/sh {GUEST_LAB_DIR}/stage2.sh
::ctrlaltdel:/bin/busybox poweroff -f
"""


def stage2_text(
    name: str, kernel: KernelImage, reports_dir: Path, drivers: Sequence[str], python: str = sys.executable
) -> str:
    q = shlex.quote
    ninep = f"trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=none"
    modules = f"/lib/modules/{kernel.release}"
    return f"""#!/bin/sh
# hostdev-lab stage 2 for lab {name}: written by L0, read-only here.
say() {{ echo "hostdev-lab[$(cut -d' ' -f1 /proc/uptime)]: $*"; }}
say "stage2 start"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
for dir in /var/lib/libvirt /var/log/libvirt /var/tmp; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
mkdir -p {modules} && mount --bind {q(str(kernel.modules_dir))} {modules}
mkdir -p {q(str(reports_dir))}
mount -t 9p -o {ninep} {REPORTS_TAG} {q(str(reports_dir))} || say "WARNING: cannot mount the reports share"
mkdir -p {GUEST_QEMU_CACHE}
mount -t 9p -o {ninep} {QEMU_CACHE_TAG} {GUEST_QEMU_CACHE} || say "WARNING: cannot mount the qemu cache"
say "mounts done"
hostname {q("lab-" + name)}
ip link set lo up
modprobe virtio_net
for dev in /sys/class/net/*; do [ "$(cat "$dev/address")" = {LAB_NIC_MAC} ] && nic=${{dev##*/}}; done
ip addr add {GUEST_IP}/24 dev "$nic" && ip link set "$nic" up && ip route add default via 10.0.2.2
setsid {q(python)} -I -S {q(str(AGENT_SCRIPT))} {GUEST_IP} {GUEST_AGENT_PORT} </dev/null >/dev/console 2>&1 &
say "agent started"
# Drivers load in the background while udev and libvirtd start: libvirt follows them through udev events.
(modprobe vfio-pci || say "vfio-pci did not load"; modprobe -a -q {" ".join(drivers)}; say "drivers loaded") &
drivers=$!
printf 'blacklist %s\n' {" ".join(UNUSED_MODULES)} > /etc/modprobe.d/hostdev-lab-unused.conf
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
say "udev triggered"
# A fresh libvirt: L0's config files, the lab's qemu.conf/libvirtd.conf, no domains, nothing autostarted.
rm -rf /etc/libvirt/qemu/*.xml /etc/libvirt/qemu/autostart /etc/libvirt/qemu/networks/autostart \\
    /etc/libvirt/storage/autostart
cp {GUEST_LAB_DIR}/libvirt/qemu.conf {GUEST_LAB_DIR}/libvirt/libvirtd.conf /etc/libvirt/
mkdir -p /run/libvirt
virtlogd -d
libvirtd -d --listen
say "libvirtd started"
wait $drivers
say "stage2 done"
"""


def write_guest_files(
    state_dir: Path, name: str, kernel: KernelImage, reports_dir: Path, device_models: Sequence[str]
) -> None:
    """Write init, inittab, stage2.sh and the libvirt config into the state dir (L1's /run/hostdev-lab)."""
    drivers = ["virtio_balloon", *sorted({DRIVER_OF_MODEL[m] for m in device_models if m in DRIVER_OF_MODEL})]
    for file_name, text in (
        ("init", INIT),
        ("inittab", INITTAB),
        ("stage2.sh", stage2_text(name, kernel, reports_dir, drivers)),
    ):
        path = state_dir / file_name
        path.write_text(text)
        path.chmod(0o755)
    # L0 reaches this libvirtd only through the loopback port forward; the guest address is slirp-private.
    write_config(state_dir / "libvirt", tcp_listen_addr=GUEST_IP)
