"""Lab device kinds: one class per ``kind`` a lab spec's ``[[devices]]`` may name, registered by subclassing.

A kind carries its spec keys (read and checked), the QEMU models it needs (and the QEMU that has them), the
arguments that put it on L1's command line below a root port of its own, and the L1 drivers of the models it
plants. A new lab device is one class here (labgrid's ``target_factory.reg_driver`` is the model).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.host.sysfs import PCI_DEVICES

if TYPE_CHECKING:
    from harness.lab.qemu import DevicePlan
    from harness.lab.spec import DeviceSpec, SpecReader

# Every registered kind by its spec name, in the order the classes are defined (spec errors list them so).
KINDS: dict[str, type[DeviceKind]] = {}
# The QEMU IOMMU device of each spec ``iommu.model`` (none: no device).
IOMMU_DEVICE = {"intel": "intel-iommu", "amd": "amd-iommu"}
# The lab's own devices on the root bus (user network, 9p shares, balloon; see harness.lab.qemu).
INFRASTRUCTURE_MODELS = ("virtio-net-pci", "virtio-9p-pci", "virtio-balloon-pci")


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


class DeviceKind:
    """A kind of lab device. Subclass with ``kind=...`` to register one; the class is never instantiated."""

    kind: ClassVar[str]
    # The QEMU model this kind is: a QEMU without it boots the lab without the device (optional) or refuses.
    model: ClassVar[str]
    # Every model it may put on the command line (probed with -device MODEL,help; see harness.lab.l1_qemu).
    qemu_models: ClassVar[tuple[str, ...]] = ()
    # Said when QEMU lacks ``model``: which QEMU has it.
    needs: ClassVar[str] = ""
    # Its spec keys beyond kind, id, optional and root_port_acs.
    keys: ClassVar[frozenset[str]] = frozenset()
    # The L1 driver of ``model``, loaded at boot rather than through udev's coldplug.
    driver: ClassVar[str | None] = None
    # False for a model that only goes behind another device (a conventional PCI NIC behind a pci-bridge).
    standalone: ClassVar[bool] = True

    def __init_subclass__(cls, *, kind: str | None = None, standalone: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        if kind in KINDS:
            raise TypeError(f"lab device kind {kind!r} is registered twice ({KINDS[kind]} and {cls})")
        cls.kind = kind
        cls.standalone = standalone
        KINDS[kind] = cls

    @classmethod
    def id_stem(cls) -> str:
        """A device without an ``id`` is ``<stem><index>`` (nvme0 for the first device, an nvme-sriov)."""
        return cls.kind.replace("-sriov", "")

    @classmethod
    def read(cls, spec: SpecReader, raw: Any, prefix: str) -> dict[str, Any]:
        """The kind's own :class:`~harness.lab.spec.DeviceSpec` fields, read from its spec table and checked."""
        return {}

    @classmethod
    def wanted_models(cls, device: DeviceSpec) -> set[str]:
        """The models this device needs (those of the devices behind it included)."""
        return {cls.model}

    @classmethod
    def plan(cls, device: DeviceSpec, plan: DevicePlan) -> None:
        """Put the device on its own root port: the port, then what :meth:`below_port` adds."""
        port_id, topology = plan.root_port(device.id, device.root_port_acs)
        cls.below_port(device, plan, port_id, topology)

    @classmethod
    def below_port(cls, device: DeviceSpec, plan: DevicePlan, port_id: str, topology: str) -> None:
        raise NotImplementedError(f"lab device kind {cls.kind!r} plans no QEMU device")


def nic_backend(qemu_id: str) -> list[str]:
    # A hub port with no other member: the NIC has a peer (no QEMU warning) and reaches nothing.
    return ["-netdev", f"hubport,id=net-{qemu_id},hubid=9"]


class NvmeSriov(DeviceKind, kind="nvme-sriov"):
    """An NVMe controller that is an SR-IOV PF (``max_vfs`` VFs), in an NVMe subsystem of its own."""

    model = "nvme"
    qemu_models = ("nvme", "nvme-subsys")
    keys = frozenset({"max_vfs"})
    driver = "nvme"

    @classmethod
    def read(cls, spec: SpecReader, raw: Any, prefix: str) -> dict[str, Any]:
        return {"max_vfs": spec.integer(raw, "max_vfs", prefix, 1, 8, default=4)}

    @classmethod
    def below_port(cls, device: DeviceSpec, plan: DevicePlan, port_id: str, topology: str) -> None:
        subsys = f"{device.id}-subsys"
        plan.argv += ["-device", f"nvme-subsys,id={subsys},nqn={subsys}"]
        plan.argv += [
            "-device",
            f"nvme,id={device.id},bus={port_id},serial={device.id},subsys={subsys},"
            f"sriov_max_vfs={device.max_vfs},sriov_vq_flexible={2 * device.max_vfs},"
            f"sriov_vi_flexible={device.max_vfs}",
        ]
        plan.add(
            device.id, device.kind, "nvme", "test", port_id, [topology, "00.0"], sriov_max_vfs=device.max_vfs
        )


class Nic(DeviceKind):
    """An emulated Ethernet controller alone below its root port; its QEMU model is its kind."""

    # VFs of an SR-IOV NIC (fixed by QEMU's model), recorded as the planned device's sriov_max_vfs.
    sriov_max_vfs: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in kwargs:
            cls.model = kwargs["kind"]
            cls.qemu_models = (cls.model,)
            if "driver" not in cls.__dict__:  # the Linux driver of most NIC models has the model's name
                cls.driver = cls.model

    @classmethod
    def read(cls, spec: SpecReader, raw: Any, prefix: str) -> dict[str, Any]:
        return {"max_vfs": cls.sriov_max_vfs}

    @classmethod
    def below_port(cls, device: DeviceSpec, plan: DevicePlan, port_id: str, topology: str) -> None:
        plan.argv += nic_backend(device.id)
        plan.argv += ["-device", f"{cls.model},id={device.id},bus={port_id},netdev=net-{device.id}"]
        props = {"sriov_max_vfs": device.max_vfs} if cls.sriov_max_vfs else {}
        plan.add(device.id, device.kind, cls.model, "test", port_id, [topology, "00.0"], **props)


class E1000e(Nic, kind="e1000e"):
    """Intel 82574L, a PCIe NIC."""


class E1000(Nic, kind="e1000"):
    """Intel 82540EM, a conventional PCI NIC."""


class Igb(Nic, kind="igb"):
    """Intel 82576, an SR-IOV NIC (7 VFs): QEMU >= 8.0 (the lab fetches a newer QEMU where the machine's lacks it)."""

    needs = "an SR-IOV NIC, QEMU >= 8.0"
    sriov_max_vfs = 7


class Rtl8139(Nic, kind="rtl8139", standalone=False):
    """Realtek 8139, a conventional PCI NIC: only behind a pci-bridge."""

    driver = "8139cp"


class WithNics(DeviceKind):
    """A kind with NICs of its own below its root port, listed by QEMU model under one spec key."""

    nics_key: ClassVar[str]  # the DeviceSpec field (and spec key) that lists them
    nic_models: ClassVar[tuple[str, ...]]  # the models allowed there
    min_nics: ClassVar[int]
    default_nics: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.keys = frozenset({cls.nics_key})

    @classmethod
    def nics(cls, device: DeviceSpec) -> tuple[str, ...]:
        models: tuple[str, ...] = getattr(device, cls.nics_key)
        return models

    @classmethod
    def read(cls, spec: SpecReader, raw: Any, prefix: str) -> dict[str, Any]:
        models = spec.models(raw, cls.nics_key, prefix, cls.nic_models, cls.min_nics, list(cls.default_nics))
        return {cls.nics_key: tuple(models)}

    @classmethod
    def wanted_models(cls, device: DeviceSpec) -> set[str]:
        return {cls.model, *cls.nics(device)}


def nic_args(model: str, qemu_id: str, bus: str, addr: str) -> list[str]:
    """A NIC at ``addr`` on ``bus``, with its own backend."""
    return [
        *nic_backend(qemu_id),
        "-device",
        f"{model},id={qemu_id},bus={bus},addr={addr},netdev=net-{qemu_id}",
    ]


class PciBridge(WithNics, kind="pci-bridge"):
    """A PCIe-to-PCI bridge with conventional PCI NICs behind it: bridge and endpoints share one IOMMU group."""

    model = "pcie-pci-bridge"
    qemu_models = ("pcie-pci-bridge",)
    nics_key = "endpoints"
    nic_models = ("e1000", "e1000e", "rtl8139")
    min_nics = 1
    default_nics = ("e1000", "e1000")

    @classmethod
    def below_port(cls, device: DeviceSpec, plan: DevicePlan, port_id: str, topology: str) -> None:
        plan.argv += ["-device", f"pcie-pci-bridge,id={device.id},bus={port_id}"]
        plan.add(device.id, device.kind, "pcie-pci-bridge", "bridge", port_id, [topology, "00.0"])
        for index, model in enumerate(device.endpoints):
            endpoint = f"{device.id}-ep{index}"
            slot = f"{index + 1:02x}"
            plan.argv += nic_args(model, endpoint, device.id, f"0x{slot}")
            topology_below = [topology, "00.0", f"{slot}.0"]
            plan.add(endpoint, "bridge-endpoint", model, "test", port_id, topology_below, behind=device.id)


class RootPort(DeviceKind, kind="root-port"):
    """``count`` empty PCIe root ports: targets for hotplug through QMP ``device_add``."""

    model = "pcie-root-port"
    qemu_models = ("pcie-root-port",)
    keys = frozenset({"count"})

    @classmethod
    def read(cls, spec: SpecReader, raw: Any, prefix: str) -> dict[str, Any]:
        return {"count": spec.integer(raw, "count", prefix, 1, 8, default=1)}

    @classmethod
    def plan(cls, device: DeviceSpec, plan: DevicePlan) -> None:
        for index in range(device.count):
            name = f"{device.id}-{index}" if device.count > 1 else device.id
            port_id, topology = plan.root_port(name, device.root_port_acs)
            plan.add(name, "root-port", "pcie-root-port", "free-root-port", port_id, [topology])


class Multifunction(WithNics, kind="multifunction"):
    """Functions 0..n of one device below a root port (function 0 carries multifunction=on): no ACS, one group."""

    model = "pcie-root-port"
    nics_key = "functions"
    nic_models = ("e1000e", "e1000")
    min_nics = 2
    default_nics = ("e1000e", "e1000e")

    @classmethod
    def below_port(cls, device: DeviceSpec, plan: DevicePlan, port_id: str, topology: str) -> None:
        for index, model in enumerate(device.functions):
            function = f"{device.id}-f{index}"
            flag = ",multifunction=on" if index == 0 else ""
            plan.argv += nic_args(model, function, port_id, f"00.{index}{flag}")
            topology_below = [topology, f"00.{index}"]
            plan.add(function, "multifunction", model, "test", port_id, topology_below, function_of=device.id)


def spec_kinds() -> tuple[str, ...]:
    """The kinds a spec may name, in registration order."""
    return tuple(name for name, kind in KINDS.items() if kind.standalone)


def probed_models() -> tuple[str, ...]:
    """Every QEMU device model a lab may use: the kinds' (root ports included), the IOMMUs' and the lab's own."""
    kinds = (model for kind in KINDS.values() for model in kind.qemu_models)
    return tuple(dict.fromkeys((*kinds, *IOMMU_DEVICE.values(), *INFRASTRUCTURE_MODELS)))


def l1_drivers(models: Iterable[str]) -> list[str]:
    """The L1 drivers of these QEMU models (models without one, such as bridges and ports, have none)."""
    driver_of = {kind.model: kind.driver for kind in KINDS.values() if kind.driver}
    return sorted({driver_of[model] for model in models if model in driver_of})


# Lists every PCI device in L1 as "<sysfs path> <driver>"; the path gives the topology below the root bus.
DISCOVER = (
    "udevadm settle --timeout=60; renice -n 0 -p $(pidof systemd-udevd) >/dev/null; "
    f"for d in {PCI_DEVICES}/*; do "
    'drv=$(readlink "$d/driver"); echo "$(readlink -f "$d") ${drv##*/}"; done'
)


def discover_devices(devices: list[LabDevice], listing: str) -> None:
    """Fill ``guest_bdf`` of each planned device from L1's sysfs listing (see :data:`DISCOVER`)."""
    by_topology: dict[tuple[str, ...], str] = {}
    for line in listing.splitlines():
        path = line.split()[0] if line.split() else ""
        if "/pci0000:00/" not in path:
            continue
        segments = path.split("/pci0000:00/", 1)[1].split("/")
        by_topology[tuple(segment[-4:] for segment in segments)] = segments[-1]
    for device in devices:
        device.guest_bdf = by_topology.get(tuple(device.topology))
