"""PCI devices of a host: sysfs, enumerated through pyudev on the live host."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.errors import HarnessInputError
from harness.host.pcicaps import PciConfig, parse_config
from harness.host.root import HostRoot
from harness.host.sysfs import PCI_DEVICES, pci_function
from harness.xml.address import PciAddress

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


class UnknownDeviceError(HarnessInputError, LookupError):
    """A PCI address that is malformed or names no device of the host."""


def parse_pci_address(text: str) -> PciAddress:
    """The one parser of a PCI address a person or a file gives: ``1:0.0``, ``0000:01:00.0``,
    ``pci_0000_01_00_0`` (libvirt's nodedev name) all give the same ``PciAddress``."""
    raw = text.strip().lower()
    try:
        return PciAddress.from_nodedev_name(raw) if raw.startswith("pci_") else PciAddress.from_bdf(raw)
    except ValueError:
        raise UnknownDeviceError(
            f"{text!r} is not a PCI address (expected DDDD:BB:SS.F, e.g. 0000:01:00.0, "
            "or a libvirt name like pci_0000_01_00_0)"
        ) from None


@dataclass(frozen=True)
class PciDevice:
    address: PciAddress
    sys_path: str
    vendor_id: str
    device_id: str
    class_code: str
    vendor_name: str | None = None
    device_name: str | None = None
    driver: str | None = None
    iommu_group: int | None = None
    parent: PciAddress | None = None
    sriov_totalvfs: int | None = None
    sriov_numvfs: int | None = None
    physfn: PciAddress | None = None
    virtfns: tuple[PciAddress, ...] = ()
    reset_method: str | None = None
    driver_override: str | None = None
    # Isolation facts from the configuration space (None: not readable or not captured).
    config: PciConfig | None = field(default=None, compare=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def nodedev_name(self) -> str:
        return self.address.nodedev_name

    @property
    def base_class(self) -> int:
        return int(self.class_code, 16) >> 16

    @property
    def is_bridge(self) -> bool:
        # Base class 0x06: host, ISA, PCI-to-PCI bridges and PCIe ports.
        return self.base_class == 0x06

    @property
    def is_multifunction(self) -> bool:
        return self.config is not None and self.config.multifunction

    @property
    def is_sriov_pf(self) -> bool:
        return bool(self.sriov_totalvfs)

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None

    @property
    def description(self) -> str:
        names = " ".join(n for n in (self.vendor_name, self.device_name) if n)
        return names or f"{self.vendor_id}:{self.device_id}"


@cache
def _pci_ids() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    vendors: dict[str, str] = {}
    devices: dict[tuple[str, str], str] = {}
    for candidate in PCI_IDS_PATHS:
        path = Path(candidate)
        if not path.is_file():
            continue
        vendor = ""
        for line in path.read_text(errors="replace").splitlines():
            if not line or line.startswith("#"):
                continue
            if line.startswith("C "):
                break  # device classes follow the vendor list
            if not line.startswith("\t"):
                vendor, _, name = line.partition("  ")
                vendors[vendor] = name.strip()
            elif not line.startswith("\t\t") and vendor:
                device, _, name = line.strip().partition("  ")
                devices[(vendor, device)] = name.strip()
        break
    return vendors, devices


def _hex_id(text: str | None) -> str:
    return (text or "0x0000").lower().removeprefix("0x")


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _udev_names(address: PciAddress) -> tuple[str | None, str | None]:
    """Names from udev's hardware database, when udevd has recorded them."""
    try:
        import pyudev
    except ImportError:
        return None, None
    try:
        device = pyudev.Devices.from_name(pyudev.Context(), "pci", address.bdf)
    except Exception:
        return None, None
    properties = device.properties
    return properties.get("ID_VENDOR_FROM_DATABASE"), properties.get("ID_MODEL_FROM_DATABASE")


def _live_sys_paths() -> list[str]:
    import pyudev

    return [device.sys_path for device in pyudev.Context().list_devices(subsystem="pci")]


def device_sys_paths(root: HostRoot) -> list[str]:
    """Host paths of every PCI device: pyudev's enumeration on the live host, sysfs in a snapshot."""
    if root.is_live:
        return sorted(_live_sys_paths(), key=lambda p: p.rsplit("/", 1)[-1])
    return [root.realpath(f"{PCI_DEVICES}/{name}") for name in root.listdir(PCI_DEVICES)]


def read_device(root: HostRoot, sys_path: str) -> PciDevice:
    entry = sys_path.rstrip("/").rsplit("/", 1)[-1]
    address = pci_function(entry)
    if address is None:
        raise root.error(
            sys_path, f"a device named {entry[:40]!r}, expected a PCI function like 0000:01:00.0"
        )

    def attr(name: str) -> str | None:
        return root.read_stripped(f"{sys_path}/{name}")

    def hex_attr(name: str, digits: int) -> str | None:
        value = root.read_hex(f"{sys_path}/{name}")
        if value is not None and not 0 <= value < 16**digits:
            raise root.error(
                f"{sys_path}/{name}", f"{value:#x} is out of range, expected {digits} hex digits"
            )
        return None if value is None else f"{value:#0{digits + 2}x}"

    def count_attr(name: str) -> int | None:
        value = root.read_number(f"{sys_path}/{name}")
        if value is not None and value < 0:
            raise root.error(f"{sys_path}/{name}", f"holds {value}, expected a count (0 or more)")
        return value

    def address_link(name: str) -> PciAddress | None:
        target = root.link_name(f"{sys_path}/{name}")
        if target is None:
            return None
        linked = pci_function(target)
        if linked is None:
            raise root.error(f"{sys_path}/{name}", f"a link to {target!r}, expected a link to a PCI function")
        return linked

    vendor_id, device_id = _hex_id(hex_attr("vendor", 4)), _hex_id(hex_attr("device", 4))
    class_code = hex_attr("class", 6)
    vendor_name, device_name = _udev_names(address) if root.is_live else (None, None)
    if vendor_name is None or device_name is None:
        vendors, devices = _pci_ids()
        vendor_name = vendor_name or vendors.get(vendor_id)
        device_name = device_name or devices.get((vendor_id, device_id))
    group = root.link_name(f"{sys_path}/iommu_group")
    if group is not None and not group.isdigit():
        raise root.error(
            f"{sys_path}/iommu_group", f"a link to {group!r}, expected a link to an IOMMU group number"
        )
    parent = pci_function(sys_path.rstrip("/").rsplit("/", 2)[-2])
    virtfns = sorted(
        (name for name in root.listdir(sys_path) if re.fullmatch(r"virtfn\d+", name)),
        key=lambda n: int(n[6:]),
    )
    override = attr("driver_override")
    return PciDevice(
        address=address,
        sys_path=sys_path,
        vendor_id=vendor_id,
        device_id=device_id,
        class_code=class_code or "0x000000",
        vendor_name=vendor_name,
        device_name=device_name,
        driver=root.link_name(f"{sys_path}/driver"),
        iommu_group=_int_or_none(group),
        parent=parent,
        sriov_totalvfs=count_attr("sriov_totalvfs"),
        sriov_numvfs=count_attr("sriov_numvfs"),
        physfn=address_link("physfn"),
        virtfns=tuple(vf for vf in map(address_link, virtfns) if vf is not None),
        reset_method=attr("reset_method"),
        driver_override=None if override in (None, "(null)") else override,
        config=_config(root, f"{sys_path}/config"),
    )


# What sysfs gives: the standard header to anyone (64 bytes), all of it to root (256 or 4096).
CONFIG_SIZES = (64, 256, 4096)


def _config(root: HostRoot, path: str) -> PciConfig | None:
    data = root.read_bytes(path)
    if data is None:
        return None
    if not root.is_live and len(data) not in CONFIG_SIZES:
        raise root.error(path, f"{len(data)} bytes, expected a configuration space of 64, 256 or 4096 bytes")
    return parse_config(data)


def enumerate_pci(root: HostRoot) -> list[PciDevice]:
    return [read_device(root, path) for path in device_sys_paths(root)]


@dataclass(frozen=True)
class IommuGroup:
    number: int
    members: tuple[PciDevice, ...]

    @property
    def addresses(self) -> tuple[PciAddress, ...]:
        return tuple(member.address for member in self.members)

    def others(self, address: PciAddress) -> tuple[PciDevice, ...]:
        return tuple(member for member in self.members if member.address != address)


def iommu_groups(devices: Iterable[PciDevice]) -> dict[int, IommuGroup]:
    members: dict[int, list[PciDevice]] = {}
    for device in devices:
        if device.iommu_group is not None:
            members.setdefault(device.iommu_group, []).append(device)
    return {number: IommuGroup(number, tuple(group)) for number, group in sorted(members.items())}


class PciInventory:
    """The PCI devices of one host, indexed by address, with their IOMMU groups."""

    def __init__(self, devices: Iterable[PciDevice]) -> None:
        self.devices = {device.address: device for device in devices}
        self.groups = iommu_groups(self.devices.values())

    def __iter__(self) -> Iterator[PciDevice]:
        return iter(self.devices.values())

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, address: PciAddress) -> PciDevice:
        try:
            return self.devices[address]
        except KeyError:
            known = ", ".join(map(str, self.devices)) or "none"
            raise UnknownDeviceError(f"no PCI device {address} on this host (devices: {known})") from None

    def group_of(self, device: PciDevice) -> IommuGroup | None:
        return None if device.iommu_group is None else self.groups.get(device.iommu_group)
