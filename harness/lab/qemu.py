"""The L1 QEMU command line, built from a :class:`LabSpec` and the lab's runtime paths and ports.

Layout on the q35 root bus: lab infrastructure (user network, 9p shares, balloon) sits in slots 2-7 as
integrated endpoints; every test device gets its own ``pcie-root-port`` from slot 8 on, so its guest BDF is
found by walking sysfs below that port (see :func:`harness.lab.devices.discover_devices`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessEnvironmentError
from harness.lab.devices import IOMMU_DEVICE, KINDS, LabDevice
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
from harness.lab.paths import CONSOLE_LOG, QEMU_PID, QMP_SOCKET
from harness.lab.spec import LabSpec

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


def wanted_models(spec: LabSpec) -> set[str]:
    """The QEMU device models a spec needs (bridge endpoints and the IOMMU included)."""
    models = {model for device in spec.devices for model in KINDS[device.kind].wanted_models(device)}
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


class DevicePlan:
    """The test devices' part of the machine: QEMU arguments and planned devices, with root ports from slot 8 on.

    Each device kind (:mod:`harness.lab.devices`) adds its own through :meth:`root_port` and :meth:`add`.
    """

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.devices: list[LabDevice] = []
        self._slot = FIRST_ROOT_PORT_SLOT

    def root_port(self, name: str, acs: bool = True) -> tuple[str, str]:
        """A new ``pcie-root-port`` on the root bus: its QEMU id and its slot (``08.0``)."""
        slot = self._slot
        if slot > LAST_ROOT_PORT_SLOT:
            raise QemuError(
                f"too many devices: only {LAST_ROOT_PORT_SLOT - FIRST_ROOT_PORT_SLOT + 1} root ports fit"
            )
        port_id = f"rp-{name}"
        self.argv.extend(
            [
                "-device",
                f"pcie-root-port,id={port_id},bus=pcie.0,addr={slot:#04x},chassis={slot},slot={slot}"
                + ("" if acs else ",disable-acs=on"),
            ]
        )
        self._slot += 1
        return port_id, f"{slot:02x}.0"

    def add(
        self, device_id: str, kind: str, model: str, role: str, port: str, topology: list[str], **props: Any
    ) -> None:
        """One device L1 will show (``role``: test, bridge or free-root-port; see :class:`LabDevice`)."""
        self.devices.append(
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


def _plan_devices(
    spec: LabSpec, models: frozenset[str], l1_qemu: L1Qemu, warn: Warn
) -> tuple[DevicePlan, dict[str, str]]:
    plan = DevicePlan()
    skipped: dict[str, str] = {}
    for device in spec.devices:
        kind = KINDS[device.kind]
        if kind.model not in models:
            why = f"QEMU {l1_qemu.version} has no {kind.model!r} device"
            if kind.needs:
                why += f" ({kind.needs})"
            if l1_qemu.fetch_error:
                why += f"; {l1_qemu.fetch_error}"
            if not device.optional:
                raise QemuError(f"hostdev-lab: cannot boot {device.id!r}: {why} (or set optional = true)")
            warn(f"hostdev-lab: {kind.model} is missing, booting without {device.id!r}: {why}")
            skipped[device.id] = why
            continue
        kind.plan(device, plan)
    return plan, skipped


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
    device_plan, skipped = _plan_devices(spec, models, l1_qemu, warn)
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
        "-chardev", f"file,id=console,path={state / CONSOLE_LOG}",
        "-serial", "chardev:console",
        "-qmp", f"unix:{state / QMP_SOCKET},server=on,wait=off",
        "-pidfile", str(state / QEMU_PID),
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
    argv += device_plan.argv
    return MachinePlan(argv=argv, env=dict(l1_qemu.binary.env), devices=device_plan.devices, skipped=skipped)


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
