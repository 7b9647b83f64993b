"""The scripts L1 runs after the initramfs switched to L0's root: written per lab into its state dir.

The state dir is L1's read-only ``/run/hostdev-lab``: ``init`` (PID 1) installs an inittab and becomes
busybox init (it reaps orphans); init runs ``stage2.sh``, which brings up udev, vfio-pci, the exec agent,
virtlogd and a libvirtd listening on TCP, without waiting for udev to settle everything first.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from harness.lab.kernel import GUEST_LAB_DIR, NINEP_MSIZE, QEMU_CACHE_TAG, REPORTS_TAG, KernelImage
from harness.lab.qemu import GUEST_AGENT_PORT, GUEST_IP, LAB_NIC_MAC
from harness.libvirt.daemon import write_config

AGENT_SCRIPT = Path(__file__).resolve().with_name("guest_agent.py")
GUEST_QEMU_CACHE = "/var/cache/libvirt/qemu"
# Drivers of the lab's test devices, loaded up front rather than waiting for udev's coldplug.
DEVICE_DRIVERS = ("virtio_balloon", "nvme", "e1000e", "e1000", "igb")

INIT = f"""#!/bin/sh
cp {GUEST_LAB_DIR}/inittab /etc/inittab
exec /bin/busybox init
"""

INITTAB = f"""::sysinit:/bin/sh {GUEST_LAB_DIR}/stage2.sh
::ctrlaltdel:/bin/busybox poweroff -f
"""


def stage2_text(name: str, kernel: KernelImage, reports_dir: Path, python: str = sys.executable) -> str:
    q = shlex.quote
    ninep = f"trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=none"
    modules = f"/lib/modules/{kernel.release}"
    return f"""#!/bin/sh
# hostdev-lab stage 2 for lab {name}: written by L0, read-only here.
say() {{ echo "hostdev-lab[$(cut -d' ' -f1 /proc/uptime)]: $*"; }}
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
hostname {q("lab-" + name)}
ip link set lo up
modprobe virtio_net
for dev in /sys/class/net/*; do [ "$(cat "$dev/address")" = {LAB_NIC_MAC} ] && nic=${{dev##*/}}; done
ip addr add {GUEST_IP}/24 dev "$nic" && ip link set "$nic" up && ip route add default via 10.0.2.2
setsid {q(python)} -I -S {q(str(AGENT_SCRIPT))} {GUEST_IP} {GUEST_AGENT_PORT} </dev/null >/dev/console 2>&1 &
modprobe vfio-pci || say "vfio-pci did not load"
for module in {" ".join(DEVICE_DRIVERS)}; do modprobe -q "$module"; done
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
# A fresh libvirt: L0's config files, the lab's qemu.conf/libvirtd.conf, no domains, nothing autostarted.
rm -rf /etc/libvirt/qemu/*.xml /etc/libvirt/qemu/autostart /etc/libvirt/qemu/networks/autostart \\
    /etc/libvirt/storage/autostart
cp {GUEST_LAB_DIR}/libvirt/qemu.conf {GUEST_LAB_DIR}/libvirt/libvirtd.conf /etc/libvirt/
mkdir -p /run/libvirt
virtlogd -d
libvirtd -d --listen
say "stage2 done: libvirtd started"
"""


def write_guest_files(state_dir: Path, name: str, kernel: KernelImage, reports_dir: Path) -> None:
    """Write init, inittab, stage2.sh and the libvirt config into the lab's state dir (L1's /run/hostdev-lab)."""
    for file_name, text in (
        ("init", INIT),
        ("inittab", INITTAB),
        ("stage2.sh", stage2_text(name, kernel, reports_dir)),
    ):
        path = state_dir / file_name
        path.write_text(text)
        path.chmod(0o755)
    # L0 reaches this libvirtd only through the loopback port forward; the guest address is slirp-private.
    write_config(state_dir / "libvirt", tcp_listen_addr=GUEST_IP)
