"""A minimal ``<domain>``: enough to carry hostdevs and hostdev/network interfaces through libvirt."""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from harness.xml.base import (
    Element,
    XmlModel,
    expect_tag,
    get_choice,
    line_of,
)
from harness.xml.errors import XmlModelError
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface, NetworkInterface

__all__ = ["Device", "Domain", "DomainType", "device_from_element"]

DomainType = Literal["qemu", "kvm"]
Device = PciHostdev | HostdevInterface | NetworkInterface


def device_from_element(element: Element) -> Device | None:
    """The model for a ``<devices>`` child, or None for kinds this harness does not model."""
    if element.tag == "hostdev" and element.get("type") == "pci":
        return PciHostdev.from_element(element)
    if element.tag == "interface" and element.get("type") == "hostdev":
        return HostdevInterface.from_element(element)
    if element.tag == "interface" and element.get("type") == "network":
        return NetworkInterface.from_element(element)
    return None


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
        try:
            return cls(
                name=name,
                memory_kib=int(memory.text),
                virt_type=get_choice(element, "type", ("qemu", "kvm")) or "kvm",
                uuid=element.findtext("uuid"),
                arch=os_type.get("arch"),
                devices=tuple(devices),
            )
        except XmlModelError as error:
            error.line = error.line or line_of(element)
            raise

    def to_element(self) -> Element:
        element = etree.Element("domain", type=self.virt_type)
        etree.SubElement(element, "name").text = self.name
        if self.uuid is not None:
            etree.SubElement(element, "uuid").text = self.uuid
        etree.SubElement(element, "memory", unit="KiB").text = str(self.memory_kib)
        os_element = etree.SubElement(element, "os")
        os_type = etree.SubElement(os_element, "type")
        os_type.text = "hvm"
        if self.arch is not None:
            os_type.set("arch", self.arch)
        devices = etree.SubElement(element, "devices")
        for device in self.devices:
            devices.append(device.to_element())
        return element
