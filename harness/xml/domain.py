"""A minimal ``<domain>``: enough to carry hostdevs and hostdev/network interfaces through libvirt.

A parsed domain keeps everything else it holds (disks, features, metadata, ...) as written. The
checks libvirt's parser makes across devices are mirrored: one host PCI device is assigned once
(virDomainHostdevFind: "Hostdev already exists in the domain configuration"), a boot order is used
by one device only (virDomainDefCollectBootOrder) and not beside ``<os><boot dev=>``, and a user
alias (``ua-...``) names one device (virDomainDefValidateAliases), counting devices the models do
not read.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from harness.xml.address import PciAddress
from harness.xml.base import (
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_choice,
    line_of,
    located_at,
    origin_of,
    parse_libvirt_uint,
    text_child,
)
from harness.xml.errors import XmlModelError
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface, NetworkInterface

__all__ = ["Device", "Domain", "DomainType", "device_from_element", "is_modelled_device"]

DomainType = Literal["qemu", "kvm"]
Device = PciHostdev | HostdevInterface | NetworkInterface


def is_modelled_device(element: Element) -> bool:
    kind = element.get("type")
    return (element.tag == "hostdev" and kind == "pci") or (
        element.tag == "interface" and kind in ("hostdev", "network")
    )


def device_from_element(element: Element) -> Device | None:
    """The model for a ``<devices>`` child, or None for kinds this harness does not model."""
    if element.tag == "hostdev" and element.get("type") == "pci":
        return PciHostdev.from_element(element)
    if element.tag == "interface" and element.get("type") == "hostdev":
        return HostdevInterface.from_element(element)
    if element.tag == "interface" and element.get("type") == "network":
        return NetworkInterface.from_element(element)
    return None


def _line(device: Device) -> int | None:
    return None if device.parsed_from is None else line_of(device.parsed_from)


def check_unique_host_devices(devices: Iterable[Device]) -> None:
    """A host PCI device goes to a guest once, as a <hostdev> or as an <interface type='hostdev'>."""
    seen: dict[PciAddress, Device] = {}
    for device in devices:
        if isinstance(device, NetworkInterface):
            continue
        if device.source in seen:
            raise XmlModelError(
                device.TAG,
                f"host PCI device {device.source.bdf} is assigned twice in this domain "
                "(libvirt: Hostdev already exists in the domain configuration)",
                attribute="<source>",
                value=device.source.bdf,
                line=_line(device),
            )
        seen[device.source] = device


def check_unique_boot_orders(devices_element: Element | None, devices: Iterable[Device]) -> None:
    """``<boot order='n'>`` is unique across all devices (disks and others included when parsed)."""
    orders: list[tuple[str, Element | None]] = []
    if devices_element is not None:
        for boot in devices_element.iterfind("*/boot"):
            if boot.get("order") is not None:
                orders.append((boot.get("order") or "", boot))
    else:
        orders = [
            (str(device.boot_order), None)
            for device in devices
            if isinstance(device, PciHostdev) and device.boot_order is not None
        ]
    seen: set[int] = set()
    for raw, where in orders:
        try:
            order = parse_libvirt_uint(raw, 10)
        except ValueError:
            continue  # the device's own parser names a bad order
        if order in seen:
            raise XmlModelError(
                "boot",
                f"boot order '{order}' used for more than one device",
                attribute="order",
                value=order,
                line=None if where is None else line_of(where),
            )
        seen.add(order)


def check_boot_and_aliases(element: Element) -> None:
    """Checks on a parsed domain that involve elements no model reads (``<os><boot>``, ``<alias>``)."""
    os_boot = element.find("os/boot")
    device_boot = element.find("devices/*/boot[@order]")
    if os_boot is not None and device_boot is not None:
        raise XmlModelError(
            "boot",
            "per-device boot elements cannot be used together with os/boot elements",
            attribute="order",
            value=device_boot.get("order"),
            line=line_of(device_boot),
        )
    seen: set[str] = set()
    for alias in element.iterfind("devices/*/alias"):
        name = alias.get("name") or ""
        if not name.startswith("ua-"):
            continue  # libvirt ignores other aliases in a definition
        if name in seen:
            raise XmlModelError(
                "alias",
                f"non unique alias detected: {name}",
                attribute="name",
                value=name,
                line=line_of(alias),
            )
        seen.add(name)


@dataclass(frozen=True)
class Domain(XmlModel):
    name: str
    memory_kib: int
    virt_type: DomainType = "kvm"
    uuid: str | None = None
    arch: str | None = None
    devices: tuple[Device, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or "\n" in self.name or self.name != self.name.strip():
            raise XmlModelError("name", "a domain name is one line without outer whitespace", value=self.name)
        if self.virt_type not in ("qemu", "kvm"):
            raise XmlModelError("domain", "expected qemu or kvm", attribute="type", value=self.virt_type)
        if self.memory_kib < 1:
            raise XmlModelError("memory", "must be positive", value=self.memory_kib)
        if self.uuid is not None:
            try:
                uuid_module.UUID(self.uuid)
            except ValueError:
                raise XmlModelError("uuid", "not a UUID", value=self.uuid) from None
        check_unique_host_devices(self.devices)
        check_unique_boot_orders(None, self.devices)

    @classmethod
    def from_element(cls, element: Element) -> Domain:
        expect_tag(element, "domain")
        name = element.findtext("name")
        memory = element.find("memory")
        if name is None or memory is None or memory.text is None:
            raise XmlModelError("domain", "needs <name> and <memory>", line=line_of(element))
        unit = memory.get("unit", "KiB")
        if unit not in ("KiB", "k"):
            raise XmlModelError(
                "memory", "only KiB is modelled", attribute="unit", value=unit, line=line_of(memory)
            )
        os_type = element.find("os/type")
        if os_type is None or os_type.text != "hvm":
            raise XmlModelError("os", "expected <type>hvm</type>", line=line_of(element))
        if not memory.text.strip().isdigit():
            raise XmlModelError("memory", "not an integer", value=memory.text, line=line_of(memory))
        devices: list[Device] = []
        for child in element.iterfind("devices/*"):
            device = device_from_element(child)
            if device is not None:
                devices.append(device)
        check_unique_host_devices(devices)
        check_unique_boot_orders(element.find("devices"), devices)
        check_boot_and_aliases(element)
        with located_at(element):
            return cls(
                name=name,
                memory_kib=int(memory.text),
                virt_type=get_choice(element, "type", ("qemu", "kvm")) or "kvm",
                uuid=element.findtext("uuid"),
                arch=os_type.get("arch"),
                devices=tuple(devices),
                parsed_from=element,
            )

    def to_element(self) -> Element:
        bound = self.parsed_from
        children: list[Child] = [text_child(bound, "name", self.name)]
        if self.uuid is not None:
            children.append(text_child(bound, "uuid", self.uuid))
        memory_origin = origin_of(bound, "memory")
        unit = "KiB" if memory_origin is None else memory_origin.get("unit")  # 'k' or absent stay
        memory = compose(
            "memory", memory_origin, [("unit", unit)], (), text=str(self.memory_kib), owns_text=True
        )
        children.append((memory, memory_origin))
        os_origin = origin_of(bound, "os")
        type_origin = origin_of(os_origin, "type")
        os_type = compose("type", type_origin, [("arch", self.arch)], (), text="hvm", owns_text=True)
        os_element = compose(
            "os", os_origin, (), [(os_type, type_origin)], owns=lambda child: child.tag == "type"
        )
        children.append((os_element, os_origin))
        devices_origin = origin_of(bound, "devices")
        devices = compose(
            "devices",
            devices_origin,
            (),
            [(device.to_element(), device.parsed_from) for device in self.devices],
            owns=is_modelled_device,
        )
        children.append((devices, devices_origin))
        return compose(
            "domain",
            bound,
            [("type", self.virt_type)],
            children,
            owns=lambda child: child.tag in ("name", "uuid", "memory", "os", "devices"),
        )
