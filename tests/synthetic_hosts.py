"""Synthesized host snapshots: hosts this project has no hardware for, written as the snapshot format.

``python -m tests.synthetic_hosts`` rewrites fixtures/hosts/synthetic-*; the tests compare the checks'
verdicts on them with each snapshot's expected.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.host import pcicaps
from harness.host.limits import DAEMONS_MARKER, daemons_marker
from harness.host.pcicaps import Acs, PortType
from harness.host.snapshot import write_manifest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
RELEASE = "6.1.0-27-amd64"
VFIO_MODULES_DEP = (
    "kernel/drivers/vfio/vfio.ko.xz: kernel/drivers/vfio/vfio_iommu_type1.ko.xz\n"
    "kernel/drivers/vfio/vfio_iommu_type1.ko.xz:\n"
    "kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz\n"
)
ECAP_WITH_INTREMAP = "f020de"  # bit 3 set
ECAP_WITHOUT_INTREMAP = "f020d6"
CAP_BARE_METAL = "d2008c40660462"  # bit 7 (Caching Mode) clear
CAP_QEMU_CACHING_MODE = "12008c22260286"  # QEMU intel-iommu,caching-mode=on: bit 7 set
DAEMON_PID = 812
BIG_LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max open files            1048576              1048576              files     \n"
    "Max locked memory         unlimited            unlimited            bytes     \n"
)


@dataclass
class Pci:
    address: str
    path: str  # below /sys/devices, e.g. pci0000:00/0000:00:1c.0/0000:01:00.0
    vendor: str
    device: str
    class_code: str
    driver: str | None
    group: int | None
    totalvfs: int | None = None
    physfn: str | None = None  # the PF's path below /sys/devices, for a VF
    # Configuration space facts; a config file is written only when port_type or conventional is set.
    port_type: PortType | None = None
    conventional: bool = False
    multifunction: bool = False
    acs: Acs | None = None


@dataclass
class SyntheticHost:
    name: str
    description: str
    cmdline: str
    vendor: str  # intel / amd / none
    groups: bool = True
    ecap: str = ECAP_WITH_INTREMAP
    cap: str = CAP_BARE_METAL
    flags: str = "fpu vme de pse msr pae vmx ssse3 sse4_2 x2apic"
    grub_path: str = "/etc/default/grub"
    grub_text: str = (
        'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"\n'
    )
    modprobe: dict[str, str] = field(default_factory=dict)
    # More files by host path: boot loader entries, grub.d snippets, os-release, config space.
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    kvm_usable: bool = True
    limits: str = BIG_LIMITS  # of the libvirt daemon, and of the capturing process (/proc/self)
    daemon: str | None = "libvirtd"  # the running daemon that starts QEMU, None: none running
    daemon_uid: int = 0
    daemons_captured: bool = True  # False: an older snapshot without the daemons' limits
    file_max: str = "9223372036854775807"
    # Overrides of the recorded libvirt facts (reachable, pci_backends, ...).
    libvirt: Mapping[str, object] = field(default_factory=dict)
    # Modules in /proc/modules; None: the vfio set when there are groups.
    loaded_modules: tuple[str, ...] | None = None
    modules_dep: str = VFIO_MODULES_DEP
    vfio_node: bool | None = None  # None: present when there are groups
    unsafe_param: str = "N"
    dmesg: list[str] = field(default_factory=list)
    devices: list[Pci] = field(default_factory=list)
    expected: dict[str, object] = field(default_factory=dict)


def build_config(
    *,
    vendor: int,
    device: int,
    class_code: int,
    multifunction: bool = False,
    port_type: PortType | None = PortType.ENDPOINT,
    acs: Acs | None = None,
) -> bytes:
    """A 4 KiB configuration space with just these facts: for synthesized snapshots and tests."""
    data = bytearray(4096)
    data[0:2], data[2:4] = vendor.to_bytes(2, "little"), device.to_bytes(2, "little")
    data[0x09:0x0C] = class_code.to_bytes(3, "little")
    bridge = class_code >> 8 == 0x0604
    data[pcicaps.HEADER_TYPE] = (0x01 if bridge else 0x00) | (
        pcicaps.MULTIFUNCTION_BIT if multifunction else 0
    )
    if port_type is not None:
        data[pcicaps.STATUS] = pcicaps.STATUS_CAPABILITIES_LIST
        data[pcicaps.CAPABILITIES_POINTER] = 0x40
        data[0x40], data[0x41] = pcicaps.CAP_ID_PCIE, 0x00
        data[0x42:0x44] = ((int(port_type) << 4) | 0x2).to_bytes(2, "little")
        if acs is not None:
            data[0x100:0x104] = (pcicaps.EXT_CAP_ID_ACS | (1 << 16)).to_bytes(4, "little")
            data[0x104:0x106] = acs.capabilities.to_bytes(2, "little")
            data[0x106:0x108] = acs.control.to_bytes(2, "little")
    return bytes(data)


# QEMU's root ports offer SrcValid, TransBlk, ReqRedir, CmpltRedir, UpstreamFwd; Linux enables them.
ISOLATING_ACS = 0x1F


def isolation_devices() -> list[Pci]:
    """Root ports with and without ACS and multi-function endpoints with and without it, as the
    isolation lab has them (fixtures/labs/isolation.toml) and the kernel groups them."""
    rp = "pci0000:00/0000:00:{}"
    with_acs = Acs(ISOLATING_ACS, ISOLATING_ACS)
    return [
        Pci("0000:00:10.0", rp.format("10.0"), "1b36", "000c", "0x060400", "pcieport", 30,
            port_type=PortType.ROOT_PORT, acs=with_acs),
        Pci("0000:04:00.0", rp.format("10.0/0000:04:00.0"), "8086", "10d3", "0x020000", "e1000e", 31,
            port_type=PortType.ENDPOINT),
        Pci("0000:00:11.0", rp.format("11.0"), "1b36", "000c", "0x060400", "pcieport", 32,
            port_type=PortType.ROOT_PORT),
        Pci("0000:05:00.0", rp.format("11.0/0000:05:00.0"), "8086", "10d3", "0x020000", "e1000e", 32,
            port_type=PortType.ENDPOINT),
        Pci("0000:00:12.0", rp.format("12.0"), "1b36", "000c", "0x060400", "pcieport", 33,
            port_type=PortType.ROOT_PORT, acs=with_acs),
        Pci("0000:06:00.0", rp.format("12.0/0000:06:00.0"), "8086", "10d3", "0x020000", "e1000e", 34,
            port_type=PortType.ENDPOINT, multifunction=True),
        Pci("0000:06:00.1", rp.format("12.0/0000:06:00.1"), "8086", "10d3", "0x020000", "e1000e", 34,
            port_type=PortType.ENDPOINT, multifunction=True),
        Pci("0000:00:13.0", rp.format("13.0"), "1b36", "000c", "0x060400", "pcieport", 35,
            port_type=PortType.ROOT_PORT, acs=Acs(ISOLATING_ACS, 0)),
        Pci("0000:07:00.0", rp.format("13.0/0000:07:00.0"), "8086", "1521", "0x020000", "igb", 35,
            port_type=PortType.ENDPOINT, multifunction=True, acs=with_acs),
        Pci("0000:07:00.1", rp.format("13.0/0000:07:00.1"), "8086", "1521", "0x020000", "igb", 35,
            port_type=PortType.ENDPOINT, multifunction=True, acs=with_acs),
    ]  # fmt: skip


def base_devices() -> list[Pci]:
    return [
        Pci("0000:00:00.0", "pci0000:00/0000:00:00.0", "8086", "3e30", "0x060000", None, 0),
        Pci("0000:00:1c.0", "pci0000:00/0000:00:1c.0", "8086", "a338", "0x060400", "pcieport", 5),
        Pci("0000:01:00.0", "pci0000:00/0000:00:1c.0/0000:01:00.0", "8086", "10c9", "0x020000", "igb", 12, 7),
        Pci("0000:00:1f.6", "pci0000:00/0000:00:1f.6", "8086", "15bb", "0x020000", "e1000e", 9),
        Pci("0000:00:1d.0", "pci0000:00/0000:00:1d.0", "8086", "a330", "0x060400", "pcieport", 6),
        Pci("0000:3d:00.0", "pci0000:00/0000:00:1d.0/0000:3d:00.0", "144d", "a808", "0x010802", "nvme", 14),
    ]


def _write(root: Path, host_path: str, content: str | bytes) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _link(root: Path, host_path: str, target: str) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _node_devices(host: SyntheticHost) -> dict[str, dict[str, object]]:
    """What libvirt's nodedev-dumpxml would say of each device: it agrees with sysfs on a sane host."""

    def name(address: str) -> str:
        return "pci_" + address.replace(":", "_").replace(".", "_")

    views: dict[str, dict[str, object]] = {}
    for device in host.devices:
        group = device.group if host.groups else None
        members = [name(d.address) for d in host.devices if host.groups and d.group == group]
        views[name(device.address)] = {
            "name": name(device.address), "driver": device.driver, "iommu_group": group,
            "iommu_group_members": members,
        }  # fmt: skip
    return views


def write_host(host: SyntheticHost, root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    _write(root, "/proc/cmdline", host.cmdline + "\n")
    _write(root, "/proc/sys/kernel/osrelease", RELEASE + "\n")
    _write(root, "/proc/sys/kernel/hostname", host.name + "\n")
    _write(root, "/proc/sys/fs/file-max", host.file_max + "\n")
    _write(root, "/proc/cpuinfo", f"processor\t: 0\nflags\t\t: {host.flags}\n")
    _write(root, "/proc/self/limits", host.limits)
    if host.daemon is not None:
        _write(root, f"/proc/{DAEMON_PID}/comm", host.daemon + "\n")
        uid = host.daemon_uid
        _write(
            root, f"/proc/{DAEMON_PID}/status", f"Name:\t{host.daemon}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
        )
        _write(root, f"/proc/{DAEMON_PID}/limits", host.limits)
    if host.daemons_captured:
        found = [str(DAEMON_PID)] if host.daemon is not None else []
        _write(root, DAEMONS_MARKER, daemons_marker(found))
    _write(
        root,
        "/proc/net/route",
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eno1\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\n",
    )
    _write(root, "/proc/self/mounts", "/dev/nvme0n1p2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n")
    _write(root, "/proc/consoles", "tty0                 -WU (EC p  )    4:1\n")
    modules = host.loaded_modules
    if modules is None:
        modules = (
            ("vfio_pci", "vfio_pci_core", "vfio_iommu_type1", "vfio", "kvm_intel", "kvm")
            if host.groups
            else ("kvm",)
        )
    _write(root, "/proc/modules", "".join(f"{m} 16384 0 - Live 0x0\n" for m in modules))
    _write(root, f"/lib/modules/{RELEASE}/modules.dep", host.modules_dep)
    _write(root, f"/lib/modules/{RELEASE}/modules.builtin", "kernel/drivers/iommu/intel/iommu.ko\n")
    if host.grub_text:
        _write(root, host.grub_path, host.grub_text)
    for path, content in host.files.items():
        _write(root, path, content)
    for name, text in host.modprobe.items():
        _write(root, f"/etc/modprobe.d/{name}", text)
    tables = ["APIC", "DSDT", "FACP", "MCFG"] + {"intel": ["DMAR"], "amd": ["IVRS"], "none": []}[host.vendor]
    for table in tables:
        _write(root, f"/sys/firmware/acpi/tables/{table}", "")
    if host.groups and host.vendor == "intel":
        _write(root, "/sys/devices/virtual/iommu/dmar0/intel-iommu/ecap", host.ecap + "\n")
        _write(root, "/sys/devices/virtual/iommu/dmar0/intel-iommu/cap", host.cap + "\n")
        _link(root, "/sys/class/iommu/dmar0", "../../devices/virtual/iommu/dmar0")
    if host.groups and host.vendor == "amd":
        _write(root, "/sys/devices/pci0000:00/0000:00:00.2/iommu/ivhd0/amd-iommu/cap", "0x190\n")
        _link(root, "/sys/class/iommu/ivhd0", "../../devices/pci0000:00/0000:00:00.2/iommu/ivhd0")
    if host.vfio_node if host.vfio_node is not None else host.groups:
        _write(root, "/dev/vfio/vfio", "")
    if host.groups:
        _write(
            root, "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", host.unsafe_param + "\n"
        )
    for device in host.devices:
        base = f"/sys/devices/{device.path}"
        _link(root, f"/sys/bus/pci/devices/{device.address}", f"../../../devices/{device.path}")
        for name, value in (
            ("vendor", f"0x{device.vendor}"),
            ("device", f"0x{device.device}"),
            ("class", device.class_code),
        ):
            _write(root, f"{base}/{name}", value + "\n")
        if device.driver:
            _link(root, f"{base}/driver", f"../../../bus/pci/drivers/{device.driver}")
        if device.group is not None and host.groups:
            _link(root, f"{base}/iommu_group", f"../../../kernel/iommu_groups/{device.group}")
            # As in sysfs: the group lists its members as links (git keeps links, not empty folders).
            _link(
                root,
                f"/sys/kernel/iommu_groups/{device.group}/devices/{device.address}",
                f"../../../../devices/{device.path}",
            )
        if device.port_type is not None or device.conventional:
            config = build_config(
                vendor=int(device.vendor, 16), device=int(device.device, 16), class_code=int(device.class_code, 16),
                multifunction=device.multifunction, port_type=device.port_type, acs=device.acs,
            )  # fmt: skip
            _write(root, f"{base}/config", config)
        if device.physfn:
            _link(root, f"{base}/physfn", "../" + device.physfn.rsplit("/", 1)[-1])
            pf = f"/sys/devices/{device.physfn}"
            index = len([d for d in host.devices if d.physfn == device.physfn and d.address < device.address])
            _link(root, f"{pf}/virtfn{index}", "../" + device.address)
        if device.totalvfs:
            _write(root, f"{base}/sriov_totalvfs", f"{device.totalvfs}\n")
            _write(root, f"{base}/sriov_numvfs", "0\n")
    _link(root, "/sys/class/net/eno1", "../../devices/pci0000:00/0000:00:1f.6/net/eno1")
    _link(
        root,
        "/sys/class/block/nvme0n1p2",
        "../../devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2",
    )
    _write(
        root,
        "/.harness/probes.json",
        json.dumps({"kvm": {"usable": host.kvm_usable, "detail": "synthesized"}}) + "\n",
    )
    vfio = host.groups and host.vendor != "none"
    libvirt = {
        "uri": "qemu:///system", "reachable": True, "error": None, "library_version": "9.0.0",
        "hypervisor_version": "7.2.0", "virt_type": "kvm", "hostdev_supported": True,
        "pci_backends": ["default", "vfio"] if vfio else [], "subsys_types": ["usb", "pci", "scsi"],
        "node_devices": _node_devices(host), **host.libvirt,
    }  # fmt: skip
    _write(root, "/.harness/libvirt.json", json.dumps(libvirt, indent=2) + "\n")
    _write(root, "/.harness/dmesg.txt", "\n".join(host.dmesg) + "\n")
    write_manifest(
        root,
        host=host.name,
        redacted=[],
        captured_at="2026-11-25T00:00:00+00:00",
        note=f"synthesized by tests/synthetic_hosts.py: {host.description}",
    )
    _write(
        root,
        "/expected.json",
        json.dumps({"description": host.description, **host.expected}, indent=2) + "\n",
    )


INTEL_DMESG = ["DMAR: IOMMU enabled", "DMAR-IR: Enabled IRQ remapping in x2apic mode"]
ALL_PASS = {name: "PASS" for name in ("hardware_virtualization", "iommu_firmware", "iommu_kernel",
            "interrupt_remapping", "vfio_ready", "libvirt_ready", "next_boot", "limits")}  # fmt: skip


def synthetic_hosts() -> list[SyntheticHost]:
    shared = [
        Pci("0000:00:1c.4", "pci0000:00/0000:00:1c.4", "8086", "a33c", "0x060400", "pcieport", 15,
            port_type=PortType.ROOT_PORT, acs=Acs(ISOLATING_ACS, ISOLATING_ACS)),
        Pci("0000:02:00.0", "pci0000:00/0000:00:1c.4/0000:02:00.0", "1b36", "000e", "0x060400", None, 15,
            port_type=PortType.PCIE_TO_PCI_BRIDGE),
        Pci("0000:03:01.0", "pci0000:00/0000:00:1c.4/0000:02:00.0/0000:03:01.0", "8086", "100e", "0x020000",
            "e1000", 15, conventional=True),
        Pci("0000:03:02.0", "pci0000:00/0000:00:1c.4/0000:02:00.0/0000:03:02.0", "8086", "100e", "0x020000",
            "e1000", 15, conventional=True),
    ]  # fmt: skip
    return [
        *boot_path_hosts(),
        *nested_hosts(),
        isolation_host(),
        SyntheticHost(
            "synthetic-intel-iommu-on",
            "Intel host prepared as the guide says",
            "intel_iommu=on iommu=pt quiet",
            "intel",
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={
                "checks": ALL_PASS,
                "devices": {
                    "0000:01:00.0": "assignable",
                    "0000:00:1f.6": "host-critical",
                    "0000:3d:00.0": "host-critical",
                    "0000:00:1c.0": "not assignable",
                },
            },
        ),
        SyntheticHost(
            "synthetic-amd-iommu-on",
            "AMD host with the IOMMU on (amd_iommu=on is a no-op)",
            "amd_iommu=on iommu=pt",
            "amd",
            flags="fpu vme svm x2apic",
            grub_text='GRUB_CMDLINE_LINUX="amd_iommu=on iommu=pt"\n',
            dmesg=["AMD-Vi: Interrupt remapping enabled", "AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40"],
            devices=base_devices(),
            expected={"checks": ALL_PASS, "devices": {"0000:01:00.0": "assignable"}},
        ),
        SyntheticHost(
            "synthetic-iommu-off-in-kernel",
            "VT-d on in firmware, not enabled in the kernel",
            "quiet",
            "intel",
            groups=False,
            grub_text='GRUB_CMDLINE_LINUX="quiet"\n',
            dmesg=["DMAR: Host address width 39"],
            devices=base_devices(),
            expected={
                "checks": {
                    "iommu_firmware": "PASS",
                    "iommu_kernel": "FAIL",
                    "interrupt_remapping": "FAIL",
                    "vfio_ready": "WARN",
                    "libvirt_ready": "FAIL",
                    "next_boot": "FAIL",
                },
                "devices": {"0000:01:00.0": "not assignable"},
            },
        ),
        SyntheticHost(
            "synthetic-unsafe-interrupts",
            "no interrupt remapping, unsafe interrupts allowed",
            "intel_iommu=on",
            "intel",
            ecap=ECAP_WITHOUT_INTREMAP,
            unsafe_param="Y",
            modprobe={"vfio.conf": "options vfio_iommu_type1 allow_unsafe_interrupts=1\n"},
            dmesg=["DMAR: IOMMU enabled"],
            devices=base_devices(),
            expected={"checks": {"iommu_kernel": "PASS", "interrupt_remapping": "WARN"}},
        ),
        SyntheticHost(
            "synthetic-shared-group",
            "a group shared by a PCIe-to-PCI bridge and two endpoints",
            "intel_iommu=on iommu=pt",
            "intel",
            dmesg=INTEL_DMESG,
            devices=base_devices() + shared,
            expected={
                "checks": {"iommu_kernel": "PASS"},
                "devices": {
                    "0000:03:01.0": "not assignable",
                    "0000:03:02.0": "not assignable",
                    "0000:02:00.0": "not assignable",
                    "0000:01:00.0": "assignable",
                },
                "reasons": {"0000:03:01.0": "0000:03:02.0 (bound to e1000)"},
                "group_reason": {"0000:03:01.0": "behind the PCIe-to-PCI bridge 0000:02:00.0"},
            },
        ),
        SyntheticHost(
            "synthetic-grub-misspelled",
            "the guide's GRUB_CMDLINX_LINUX typo in /etc/sysconfig/grub",
            "intel_iommu=on iommu=pt",
            "intel",
            grub_path="/etc/sysconfig/grub",
            grub_text='GRUB_TIMEOUT=5\nGRUB_CMDLINX_LINUX="rhgb quiet intel_iommu=on iommu=pt"\n',
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={"checks": {"next_boot": "FAIL"}, "hints": {"next_boot": "GRUB_CMDLINX_LINUX"}},
        ),
    ]


def _linux(args: str, kernel: str = RELEASE) -> str:
    """A grub.cfg as update-grub writes it: the first menu entry is the default one."""
    return (
        "### BEGIN /etc/grub.d/10_linux ###\n"
        "menuentry 'Debian GNU/Linux' --class debian {\n"
        f"\tlinux\t/boot/vmlinuz-{kernel} root=UUID=0b1c ro {args}\n"
        f"\tinitrd\t/boot/initrd.img-{kernel}\n"
        "}\n"
    )


OS_RELEASE = {
    "debian": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
    "ubuntu": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\n',
    "rhel9": 'PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\nID="rhel"\n',
    "rhel8": 'PRETTY_NAME="Red Hat Enterprise Linux 8.10 (Ootpa)"\nID="rhel"\n',
}
RHEL_GRUB = (
    "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n"
    'GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT="console"\n'
    'GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M rd.lvm.lv=rhel/root rhgb quiet intel_iommu=on iommu=pt"\n'
    'GRUB_DISABLE_RECOVERY="true"\nGRUB_ENABLE_BLSCFG=true\n'
)
MACHINE_ID = "4f1d2c7e9a8b4c3d"


def boot_path_hosts() -> list[SyntheticHost]:
    """One host per boot path and distribution family, each with the next boot's verdict it must get."""
    return [
        SyntheticHost(
            "synthetic-ubuntu-grub-d-undoes",
            "Ubuntu cloud image: /etc/default/grub adds intel_iommu=on, grub.d/50-cloudimg-settings.cfg "
            "sets GRUB_CMDLINE_LINUX_DEFAULT again without it; grub.cfg was regenerated",
            "intel_iommu=on iommu=pt console=ttyS0",
            "intel",
            grub_text='GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash intel_iommu=on iommu=pt"\n'
            'GRUB_CMDLINE_LINUX=""\n',
            files={
                "/etc/default/grub.d/50-cloudimg-settings.cfg": "# Cloud Image specific Grub settings\n"
                "GRUB_TIMEOUT=0\n\n# Set the default commandline\n"
                'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n',
                "/etc/default/grub.d/init-select.cfg": 'if [ "${GRUB_CMDLINE_LINUX_DEFAULT:-}" = x ]; then :; fi\n',
                "/boot/grub/grub.cfg": _linux("console=tty1 console=ttyS0"),
                "/etc/os-release": OS_RELEASE["ubuntu"],
            },
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={
                "checks": {"next_boot": "WARN"},
                "hints": {
                    "next_boot": "GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub.d/50-cloudimg-settings.cfg (line 5)"
                },
                "evidence": {"next_boot": "had intel_iommu=on in /etc/default/grub line 2"},
            },
        ),
        SyntheticHost(
            "synthetic-debian-grub-d-off",
            "Debian: a later grub.d snippet appends intel_iommu=off to $GRUB_CMDLINE_LINUX (the last one wins)",
            "intel_iommu=on iommu=pt",
            "intel",
            files={
                "/etc/default/grub.d/99-local.cfg": 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX intel_iommu=off"\n',
                "/boot/grub/grub.cfg": _linux("intel_iommu=on iommu=pt intel_iommu=off quiet"),
                "/etc/os-release": OS_RELEASE["debian"],
            },
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={
                "checks": {"next_boot": "FAIL"},
                "hints": {
                    "next_boot": "remove intel_iommu=off from /etc/default/grub.d/99-local.cfg (line 1), then run update-grub"
                },
            },
        ),
        SyntheticHost(
            "synthetic-debian-stale-grub-cfg",
            "Debian: intel_iommu=on added to /etc/default/grub, update-grub not run, not rebooted",
            "quiet",
            "intel",
            groups=False,
            files={"/boot/grub/grub.cfg": _linux("quiet"), "/etc/os-release": OS_RELEASE["debian"]},
            dmesg=["DMAR: Host address width 39"],
            devices=base_devices(),
            expected={
                "checks": {"next_boot": "FAIL", "iommu_kernel": "FAIL"},
                "hints": {"next_boot": "was not regenerated: run update-grub"},
            },
        ),
        SyntheticHost(
            "synthetic-rhel9-bls",
            "RHEL 9: BootLoaderSpec entries carry the arguments (grubby), the default entry is saved_entry",
            "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.el9.x86_64 root=/dev/mapper/rhel-root intel_iommu=on iommu=pt",
            "intel",
            grub_text=RHEL_GRUB,
            files={
                "/boot/grub2/grub.cfg": "insmod blscfg\nblscfg\n",
                "/boot/grub2/grubenv": f"# GRUB Environment Block\nsaved_entry={MACHINE_ID}-5.14.0-427.el9.x86_64\n",
                f"/boot/loader/entries/{MACHINE_ID}-5.14.0-427.el9.x86_64.conf": "title Red Hat Enterprise Linux (5.14.0-427.el9.x86_64) 9.4\n"
                "version 5.14.0-427.el9.x86_64\nlinux /vmlinuz-5.14.0-427.el9.x86_64\n"
                "options root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M rhgb quiet intel_iommu=on iommu=pt\n",
                f"/boot/loader/entries/{MACHINE_ID}-0-rescue.conf": "title Red Hat Enterprise Linux (0-rescue) 9.4\n"
                "version 0-rescue\nlinux /vmlinuz-0-rescue\noptions root=/dev/mapper/rhel-root ro rhgb quiet\n",
                "/etc/kernel/cmdline": "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M rhgb quiet intel_iommu=on iommu=pt\n",
                "/etc/os-release": OS_RELEASE["rhel9"],
            },
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={"checks": ALL_PASS},
        ),
        SyntheticHost(
            "synthetic-rhel8-kernelopts",
            "RHEL 8: entries say options $kernelopts, grubenv's kernelopts lacks intel_iommu=on although "
            "/etc/default/grub has it (grub2-mkconfig / grubby never run)",
            "BOOT_IMAGE=(hd0,msdos1)/vmlinuz-4.18.0-553.el8_10.x86_64 root=/dev/mapper/rhel-root rhgb quiet",
            "intel",
            groups=False,
            grub_text=RHEL_GRUB,
            files={
                "/boot/grub2/grub.cfg": "insmod blscfg\nblscfg\n",
                "/boot/grub2/grubenv": "# GRUB Environment Block\n"
                "kernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto rhgb quiet\n",
                f"/boot/loader/entries/{MACHINE_ID}-4.18.0-553.el8_10.x86_64.conf": "title Red Hat Enterprise Linux (4.18.0-553.el8_10.x86_64) 8.10\n"
                "version 4.18.0-553.el8_10.x86_64\nlinux /vmlinuz-4.18.0-553.el8_10.x86_64\n"
                "options $kernelopts $tuned_params\n",
                "/etc/os-release": OS_RELEASE["rhel8"],
            },
            dmesg=["DMAR: Host address width 39"],
            devices=base_devices(),
            expected={
                "checks": {"next_boot": "FAIL"},
                "hints": {"next_boot": 'grubby --update-kernel=ALL --args="intel_iommu=on iommu=pt"'},
                "evidence": {"next_boot": "root=/dev/mapper/rhel-root ro crashkernel=auto rhgb quiet"},
            },
        ),
        SyntheticHost(
            "synthetic-systemd-boot",
            "Debian with systemd-boot: /etc/kernel/cmdline has intel_iommu=on, the installed entry predates it",
            "root=UUID=0b1c rw intel_iommu=on iommu=pt",
            "intel",
            grub_text="",
            files={
                "/etc/kernel/cmdline": "root=UUID=0b1c rw intel_iommu=on iommu=pt\n",
                "/boot/efi/loader/loader.conf": "timeout 3\ndefault *-6.1.0-27-amd64.conf\n",
                f"/boot/efi/loader/entries/{MACHINE_ID}-6.1.0-27-amd64.conf": "title Debian GNU/Linux 12\n"
                f"version 6.1.0-27-amd64\nlinux /{MACHINE_ID}/6.1.0-27-amd64/linux\noptions root=UUID=0b1c rw\n",
                "/etc/os-release": OS_RELEASE["debian"],
            },
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={
                "checks": {"next_boot": "WARN"},
                "hints": {"next_boot": "/etc/kernel/cmdline has it but"},
            },
        ),
    ]


def isolation_host() -> SyntheticHost:
    return SyntheticHost(
        "synthetic-isolation",
        "ACS on some root ports and not others; multi-function endpoints with and without ACS",
        "intel_iommu=on iommu=pt",
        "intel",
        dmesg=INTEL_DMESG,
        devices=[*base_devices(), *isolation_devices()],
        expected={
            "devices": {
                "0000:04:00.0": "assignable",
                "0000:05:00.0": "assignable",
                "0000:06:00.0": "not assignable",
            },
            "acs_path": {
                "0000:04:00.0": "ACS on the whole path; ports: 0000:00:10.0 (root port)",
                "0000:05:00.0": "0000:00:11.0 (root port): no ACS capability",
                "0000:06:00.0": "a multi-function device without ACS",
                "0000:07:00.0": "0000:00:13.0 (root port): ACS SrcValid, ReqRedir, CmpltRedir, UpstreamFwd not enabled",
            },
            "group_reason": {
                "0000:05:00.0": "0000:00:11.0 (root port) has no ACS",
                "0000:06:00.1": "functions 0000:06:00.0, 0000:06:00.1 of one multi-function device without ACS",
                "0000:00:11.0": "0000:00:11.0 (root port) has no ACS",
                "0000:04:00.0": None,
                "0000:07:00.1": "0000:00:13.0 (root port) has no ACS",
            },
        },
    )


def nested_hosts() -> list[SyntheticHost]:
    """Hosts that are themselves QEMU/KVM guests, as the lab's L1 is."""
    qemu_dmi = {
        "/sys/class/dmi/id/sys_vendor": "QEMU\n",
        "/sys/class/dmi/id/product_name": "Standard PC (Q35 + ICH9, 2009)\n",
        "/sys/module/kvm_intel/parameters/nested": "N\n",
    }
    virtio = Pci("0000:00:02.0", "pci0000:00/0000:00:02.0", "1af4", "1041", "0x020000", "virtio-pci", 2)
    return [
        SyntheticHost(
            "synthetic-nested-qemu",
            "a QEMU q35 guest with an emulated VT-d in caching mode and kvm_intel nested=N",
            "intel_iommu=on iommu=pt",
            "intel",
            flags="fpu vme de pse msr pae vmx hypervisor x2apic",
            cap=CAP_QEMU_CACHING_MODE,
            files=qemu_dmi,
            dmesg=INTEL_DMESG,
            devices=[*base_devices(), virtio],
            expected={
                "checks": ALL_PASS,
                "evidence": {
                    "iommu_firmware": "emulated VT-d with Caching Mode (dmar0 CM=1)",
                    "hardware_virtualization": "kvm nested=N",
                },
            },
        ),
        SyntheticHost(
            "synthetic-nested-no-caching-mode",
            "a QEMU guest whose emulated VT-d lacks caching mode: its emulated devices still work through vfio",
            "intel_iommu=on iommu=pt",
            "intel",
            flags="fpu vme de pse msr pae hypervisor x2apic",
            files={"/sys/class/dmi/id/sys_vendor": "QEMU\n"},
            dmesg=INTEL_DMESG,
            devices=base_devices(),
            expected={
                # The IOMMU checks PASS: the emulated devices here work through vfio (measured in the lab).
                "checks": {**ALL_PASS, "hardware_virtualization": "WARN"},
                "evidence": {
                    "iommu_kernel": "without Caching Mode (dmar0 CM=0): devices the hypervisor emulates"
                },
            },
        ),
    ]


def main() -> None:
    for host in synthetic_hosts():
        write_host(host, FIXTURES / host.name)
        print(f"wrote {FIXTURES / host.name}")


if __name__ == "__main__":
    main()
