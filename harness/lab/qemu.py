"""The L1 QEMU command line, built from a :class:`LabSpec` and the lab's runtime paths and ports.

Layout on the q35 root bus: lab infrastructure (user network, 9p shares, balloon) sits in slots 2-7 as
integrated endpoints; every test device gets its own ``pcie-root-port`` from slot 8 on, so its guest BDF is
found by walking sysfs below that port (see :func:`harness.lab.lab.discover_devices`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessEnvironmentError
from harness.lab.kernel import (
    GUEST_IP,
    LAB_TAG,
    PROBE_ARG,
    QEMU_CACHE_TAG,
    REPORTS_TAG,
    ROOT_CACHE_ARG,
    ROOT_CACHE_ENV,
    ROOT_TAG,
)
from harness.lab.l1_qemu import L1Qemu, QemuBinary, available_device_models, qemu_version
from harness.lab.spec import DeviceSpec, LabSpec

# The model a kind needs; a multifunction device's own models are its functions (see wanted_models).
MODEL_OF_KIND = {
    "nvme-sriov": "nvme",
    "pci-bridge": "pcie-pci-bridge",
    "root-port": "pcie-root-port",
    "multifunction": "pcie-root-port",
}
IOMMU_DEVICE = {"intel": "intel-iommu", "amd": "amd-iommu"}
GUEST_LIBVIRTD_PORT = 16509
GUEST_AGENT_PORT = 7000
GUEST_SSH_PORT = 22
LAB_NIC_MAC = "52:54:00:4c:41:42"
FIRST_ROOT_PORT_SLOT = 0x08
LAST_ROOT_PORT_SLOT = 0x1E
# Arguments the lab itself needs on every boot; the spec's kernel arguments come after these.
# no_timer_check: on a loaded host TCG's vCPU can miss the kernel's early timer test, which then panics
# ("timer doesn't work through Interrupt-remapped IO-APIC"; seen at load average 15 on 2 cores).
LAB_KERNEL_ARGS = (
    "console=ttyS0,115200", "panic=-1", "loglevel=4", "mitigations=off", "net.ifnames=0", "no_timer_check",
)  # fmt: skip

Warn = Callable[[str], None]


class QemuError(HarnessEnvironmentError):
    """The requested lab cannot be expressed with this QEMU."""


@dataclass
class LabDevice:
    """One device of the lab as L0 planned it and L1 found it (``guest_bdf`` filled after boot)."""

    id: str
    kind: str
    model: str
    role: str  # "test" (assignable by suites), "bridge", "free-root-port"
    qemu_id: str
    root_port: str
    # Device.function at each level below the root bus: ["08.0", "00.0"] is the port's first child.
    topology: list[str]
    assignable: bool
    guest_bdf: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RuntimePaths:
    state_dir: Path
    reports_dir: Path
    qemu_cache_dir: Path
    kernel: Path
    initramfs: Path


@dataclass(frozen=True)
class Ports:
    libvirtd: int
    agent: int
    ssh: int | None = None  # L1's sshd, when the lab has one (spec [access] ssh, hostdev-lab up --ssh)


@dataclass
class MachinePlan:
    argv: list[str]
    env: dict[str, str]
    devices: list[LabDevice]
    skipped: dict[str, str]  # device id -> why it is not in this lab


def has_igb(models: frozenset[str]) -> bool:
    """igb (an SR-IOV NIC) arrived in QEMU 8.0."""
    return "igb" in models


def wanted_models(spec: LabSpec) -> set[str]:
    """The QEMU device models a spec needs (bridge endpoints and the IOMMU included)."""
    models = {MODEL_OF_KIND.get(device.kind, device.kind) for device in spec.devices}
    models |= {endpoint for device in spec.devices for endpoint in device.endpoints}
    models |= {function for device in spec.devices for function in device.functions}
    if spec.iommu.model != "none":
        models.add(IOMMU_DEVICE[spec.iommu.model])
    return models


def kernel_command_line(spec: LabSpec, *, probe: bool = False) -> str:
    args = [*LAB_KERNEL_ARGS, *spec.kernel.args]
    root_cache = os.environ.get(ROOT_CACHE_ENV, "loose")
    if root_cache not in ("loose", "none", "mmap"):
        raise QemuError(f"{ROOT_CACHE_ENV}={root_cache!r}: expected loose, none or mmap")
    if root_cache != "loose":
        args.insert(len(LAB_KERNEL_ARGS), f"{ROOT_CACHE_ARG}={root_cache}")
    if probe:
        args.append(PROBE_ARG)
    return " ".join(args)


# "max,svm=off,vmx=off" crashes L1's userspace under QEMU 7.2 TCG; L1 keeps kvm modules off instead.
TCG_CPU_MODEL = "max"


def accel_args(accel: str, spec: LabSpec) -> list[str]:
    machine = f"{spec.machine.type}"
    if accel == "kvm":
        # KVM's in-kernel IOAPIC cannot be remapped: interrupt remapping needs the split irqchip.
        if spec.iommu.model != "none" and spec.iommu.intremap:
            machine += ",kernel-irqchip=split"
        return ["-machine", machine, "-accel", "kvm", "-cpu", "host"]
    return [
        "-machine",
        machine,
        "-accel",
        f"tcg,thread=multi,tb-size={spec.machine.tcg_tb_size_mib}",
        "-cpu",
        TCG_CPU_MODEL,
    ]


def _nic_backend(qemu_id: str) -> list[str]:
    # A hub port with no other member: the NIC has a peer (no QEMU warning) and reaches nothing.
    return ["-netdev", f"hubport,id=net-{qemu_id},hubid=9"]


def _plan_devices(
    spec: LabSpec, models: frozenset[str], l1_qemu: L1Qemu, warn: Warn
) -> tuple[list[str], list[LabDevice], dict[str, str]]:
    argv: list[str] = []
    devices: list[LabDevice] = []
    skipped: dict[str, str] = {}
    slot = FIRST_ROOT_PORT_SLOT

    def root_port(name: str, acs: bool = True) -> tuple[str, str]:
        nonlocal slot
        if slot > LAST_ROOT_PORT_SLOT:
            raise QemuError(
                f"too many devices: only {LAST_ROOT_PORT_SLOT - FIRST_ROOT_PORT_SLOT + 1} root ports fit"
            )
        port_id = f"rp-{name}"
        argv.extend(
            [
                "-device",
                f"pcie-root-port,id={port_id},bus=pcie.0,addr={slot:#04x},chassis={slot},slot={slot}"
                + ("" if acs else ",disable-acs=on"),
            ]
        )
        topology = f"{slot:02x}.0"
        slot += 1
        return port_id, topology

    for device in spec.devices:
        model = MODEL_OF_KIND.get(device.kind, device.kind)
        if model not in models:
            why = f"QEMU {l1_qemu.version} has no {model!r} device"
            if model == "igb":
                why += " (an SR-IOV NIC, QEMU >= 8.0)"
            if l1_qemu.fetch_error:
                why += f"; {l1_qemu.fetch_error}"
            if not device.optional:
                raise QemuError(f"hostdev-lab: cannot boot {device.id!r}: {why} (or set optional = true)")
            warn(f"hostdev-lab: {model} is missing, booting without {device.id!r}: {why}")
            skipped[device.id] = why
            continue
        _plan_one(device, root_port, argv, devices)
    return argv, devices, skipped


def _plan_one(
    device: DeviceSpec,
    root_port: Callable[[str, bool], tuple[str, str]],
    argv: list[str],
    devices: list[LabDevice],
) -> None:
    def add(
        device_id: str, kind: str, model: str, role: str, port: str, topology: list[str], **props: Any
    ) -> None:
        devices.append(
            LabDevice(
                id=device_id,
                kind=kind,
                model=model,
                role=role,
                qemu_id=port if role == "free-root-port" else device_id,
                root_port=port,
                topology=topology,
                assignable=role == "test",
                properties=props,
            )
        )

    if device.kind == "root-port":
        for index in range(device.count):
            name = f"{device.id}-{index}" if device.count > 1 else device.id
            port_id, topology = root_port(name, device.root_port_acs)
            add(name, "root-port", "pcie-root-port", "free-root-port", port_id, [topology])
        return
    port_id, topology = root_port(device.id, device.root_port_acs)
    if device.kind == "nvme-sriov":
        subsys = f"{device.id}-subsys"
        argv += ["-device", f"nvme-subsys,id={subsys},nqn={subsys}"]
        argv += [
            "-device",
            f"nvme,id={device.id},bus={port_id},serial={device.id},subsys={subsys},"
            f"sriov_max_vfs={device.max_vfs},sriov_vq_flexible={2 * device.max_vfs},"
            f"sriov_vi_flexible={device.max_vfs}",
        ]
        add(device.id, device.kind, "nvme", "test", port_id, [topology, "00.0"], sriov_max_vfs=device.max_vfs)
    elif device.kind in ("e1000e", "e1000", "igb"):
        argv += _nic_backend(device.id)
        argv += ["-device", f"{device.kind},id={device.id},bus={port_id},netdev=net-{device.id}"]
        props = {"sriov_max_vfs": device.max_vfs} if device.kind == "igb" else {}
        add(device.id, device.kind, device.kind, "test", port_id, [topology, "00.0"], **props)
    elif device.kind == "pci-bridge":
        argv += ["-device", f"pcie-pci-bridge,id={device.id},bus={port_id}"]
        add(device.id, device.kind, "pcie-pci-bridge", "bridge", port_id, [topology, "00.0"])
        for index, model in enumerate(device.endpoints):
            endpoint = f"{device.id}-ep{index}"
            slot = f"{index + 1:02x}"
            argv += _nic_backend(endpoint)
            argv += ["-device", f"{model},id={endpoint},bus={device.id},addr=0x{slot},netdev=net-{endpoint}"]
            add(
                endpoint,
                "bridge-endpoint",
                model,
                "test",
                port_id,
                [topology, "00.0", f"{slot}.0"],
                behind=device.id,
            )
    elif device.kind == "multifunction":
        # Functions 0..n of one device below the port; function 0 carries multifunction=on.
        for index, model in enumerate(device.functions):
            function = f"{device.id}-f{index}"
            flag = ",multifunction=on" if index == 0 else ""
            argv += _nic_backend(function)
            argv += [
                "-device",
                f"{model},id={function},bus={port_id},addr=00.{index}{flag},netdev=net-{function}",
            ]
            add(
                function,
                "multifunction",
                model,
                "test",
                port_id,
                [topology, f"00.{index}"],
                function_of=device.id,
            )
    else:  # pragma: no cover - spec validation rejects other kinds
        raise QemuError(f"unknown device kind {device.kind!r}")


def _fsdev(name: str, tag: str, path: Path, addr: int, *, readonly: bool, remap: bool = False) -> list[str]:
    options = f"local,id=fs-{name},path={path},security_model=none"
    if readonly:
        options += ",readonly=on"
    if remap:
        # L0's root spans several filesystems: remap inode numbers so they stay unique in the guest.
        options += ",multidevs=remap"
    device = f"virtio-9p-pci,fsdev=fs-{name},mount_tag={tag},bus=pcie.0,addr={addr:#04x}"
    return ["-fsdev", options, "-device", device]


def build_machine(
    spec: LabSpec,
    paths: RuntimePaths,
    ports: Ports,
    *,
    accel: str,
    l1_qemu: L1Qemu | None = None,
    models: frozenset[str] | None = None,
    warn: Warn = print,
) -> MachinePlan:
    """Plan the L1 machine: the full QEMU argv and the devices the suites will see."""
    if l1_qemu is None:
        machine = QemuBinary()
        l1_qemu = L1Qemu(machine, qemu_version(machine), "machine", "default")
    models = available_device_models(l1_qemu.binary) if models is None else models
    device_argv, devices, skipped = _plan_devices(spec, models, l1_qemu, warn)
    state = paths.state_dir
    argv = [
        *l1_qemu.binary.prefix,
        "-name", f"hostdev-lab-{state.name}",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        *accel_args(accel, spec),
        "-m", str(spec.machine.memory_mib),
        "-smp", str(spec.machine.cpus),
        "-kernel", str(paths.kernel),
        "-initrd", str(paths.initramfs),
        "-append", kernel_command_line(spec),
        "-chardev", f"file,id=console,path={state / 'console.log'}",
        "-serial", "chardev:console",
        "-qmp", f"unix:{state / 'qmp.sock'},server=on,wait=off",
        "-pidfile", str(state / "qemu.pid"),
    ]  # fmt: skip
    argv += iommu_args(spec)
    forwards = [
        f"hostfwd=tcp:127.0.0.1:{ports.libvirtd}-{GUEST_IP}:{GUEST_LIBVIRTD_PORT}",
        f"hostfwd=tcp:127.0.0.1:{ports.agent}-{GUEST_IP}:{GUEST_AGENT_PORT}",
    ]
    if ports.ssh is not None:
        forwards.append(f"hostfwd=tcp:127.0.0.1:{ports.ssh}-{GUEST_IP}:{GUEST_SSH_PORT}")
    # restrict=on: the guest reaches nothing outside; only the loopback forwards come in.
    argv += ["-netdev", f"user,id=labnet,restrict=on,{','.join(forwards)}"]
    argv += ["-device", f"virtio-net-pci,netdev=labnet,mac={LAB_NIC_MAC},bus=pcie.0,addr=0x02"]
    argv += _fsdev("root", ROOT_TAG, Path("/"), 0x03, readonly=True, remap=True)
    argv += _fsdev("lab", LAB_TAG, state, 0x04, readonly=True)
    argv += _fsdev("reports", REPORTS_TAG, paths.reports_dir, 0x05, readonly=False)
    argv += _fsdev("qemucache", QEMU_CACHE_TAG, paths.qemu_cache_dir, 0x06, readonly=False)
    argv += ["-device", "virtio-balloon-pci,bus=pcie.0,addr=0x07,free-page-reporting=on"]
    argv += device_argv
    return MachinePlan(argv=argv, env=dict(l1_qemu.binary.env), devices=devices, skipped=skipped)


def iommu_args(spec: LabSpec) -> list[str]:
    """The IOMMU device; it must come before the PCI devices it translates for."""
    on_off = {True: "on", False: "off"}
    iommu = spec.iommu
    if iommu.model == "intel":
        return [
            "-device",
            f"intel-iommu,intremap={on_off[iommu.intremap]},caching-mode={on_off[iommu.caching_mode]}",
        ]
    if iommu.model == "amd":
        # amd-iommu takes the first free slot of pcie.0 (00:01.0, before the lab's fixed slots).
        options = f"amd-iommu,intremap={on_off[iommu.intremap]}"
        if iommu.xtsup:  # x2APIC interrupt remapping (QEMU >= 9.0)
            options += ",xtsup=on"
        return ["-device", options]
    return []


def probe_argv(kernel: Path, initramfs: Path, accel: str) -> list[str]:
    """A minimal boot that prints the probe marker from the initramfs and powers off."""
    spec = LabSpec(name="probe", path=None)
    return [
        *QemuBinary().prefix,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        *accel_args(accel, spec),
        "-m", "256", "-smp", "1",
        "-kernel", str(kernel), "-initrd", str(initramfs),
        "-append", kernel_command_line(spec, probe=True),
        "-serial", "stdio",
    ]  # fmt: skip
