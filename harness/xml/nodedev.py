"""``virsh nodedev-dumpxml pci_...``: a PCI device, its IOMMU group and its SR-IOV relations."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from harness.xml.address import PCI_LIMITS, PciAddress
from harness.xml.base import (
    Element,
    XmlModel,
    expect_tag,
    get_int,
    line_of,
    parse_libvirt_int,
    required_attr,
)
from harness.xml.errors import XmlModelError

__all__ = ["IommuGroup", "NodeDevice", "PciCapability", "PciId", "VirtFunctions"]

_HEX_ID = re.compile(r"^0x[0-9a-f]{4}$")


@dataclass(frozen=True)
class PciId:
    """``<product id='0x10c9'>name</product>`` or the same for ``<vendor>``; the name may be absent."""

    id: str
    name: str | None = None

    def __post_init__(self) -> None:
        if not _HEX_ID.match(self.id):
            raise XmlModelError(
                "product",
                "id must be 0x followed by four lowercase hex digits",
                attribute="id",
                value=self.id,
            )


@dataclass(frozen=True)
class IommuGroup:
    number: int
    addresses: tuple[PciAddress, ...]

    def __post_init__(self) -> None:
        if self.number < 0:
            raise XmlModelError("iommuGroup", "must be 0 or more", attribute="number", value=self.number)
        if not self.addresses:
            raise XmlModelError("iommuGroup", "a group has at least one member", attribute="<address>")


@dataclass(frozen=True)
class VirtFunctions:
    """``<capability type='virt_functions' maxCount=..>``: the VFs a PF has (and could have)."""

    addresses: tuple[PciAddress, ...]
    max_count: int | None = None

    def __post_init__(self) -> None:
        if self.max_count is not None and self.max_count < len(self.addresses):
            raise XmlModelError(
                "capability", "fewer than the VFs listed", attribute="maxCount", value=self.max_count
            )


@dataclass(frozen=True)
class PciCapability:
    address: PciAddress
    product: PciId
    vendor: PciId
    pci_class: str | None = None
    phys_function: PciAddress | None = None
    virt_functions: VirtFunctions | None = None
    iommu_group: IommuGroup | None = None

    def __post_init__(self) -> None:
        if self.pci_class is not None and not re.match(r"^0x[0-9a-fA-F]{6}$", self.pci_class):
            raise XmlModelError("class", "must be 0x and six hex digits", value=self.pci_class)

    @classmethod
    def from_element(cls, element: Element) -> PciCapability:
        parts: dict[str, int] = {}
        for part, limit in PCI_LIMITS.items():
            child = element.find(part)
            if child is None or child.text is None:
                raise XmlModelError("capability", "missing", attribute=f"<{part}>", line=line_of(element))
            try:
                value = parse_libvirt_int(child.text)
            except ValueError:
                raise XmlModelError(part, "not an integer", value=child.text, line=line_of(child)) from None
            if value > limit:
                raise XmlModelError(
                    part, f"PCI {part} must be 0..{limit:#x}", value=child.text, line=line_of(child)
                )
            parts[part] = value
        ids = []
        for tag in ("product", "vendor"):
            child = element.find(tag)
            if child is None:
                raise XmlModelError("capability", "missing", attribute=f"<{tag}>", line=line_of(element))
            try:
                ids.append(PciId(required_attr(child, "id"), child.text))
            except XmlModelError as error:
                error.element, error.line = tag, line_of(child)
                raise
        phys = element.find("capability[@type='phys_function']/address")
        virt = element.find("capability[@type='virt_functions']")
        group = element.find("iommuGroup")
        return cls(
            address=PciAddress(
                parts["domain"], parts["bus"], parts["slot"], parts["function"], notation="decimal"
            ),
            product=ids[0],
            vendor=ids[1],
            pci_class=element.findtext("class"),
            phys_function=None if phys is None else PciAddress.from_element(phys),
            virt_functions=None
            if virt is None
            else VirtFunctions(
                tuple(PciAddress.from_element(a) for a in virt.findall("address")),
                get_int(virt, "maxCount"),
            ),
            iommu_group=None
            if group is None
            else IommuGroup(
                get_int(group, "number", required=True) or 0,
                tuple(PciAddress.from_element(a) for a in group.findall("address")),
            ),
        )

    def to_element(self) -> Element:
        # nodedev.rng is a sequence here, not an interleave: keep libvirt's order.
        element = etree.Element("capability", type="pci")
        if self.pci_class is not None:
            etree.SubElement(element, "class").text = self.pci_class
        for part in PCI_LIMITS:
            etree.SubElement(element, part).text = str(getattr(self.address, part))
        for tag, pci_id in (("product", self.product), ("vendor", self.vendor)):
            etree.SubElement(element, tag, id=pci_id.id).text = pci_id.name
        if self.phys_function is not None:
            etree.SubElement(element, "capability", type="phys_function").append(
                self.phys_function.to_element(with_type=False)
            )
        if self.virt_functions is not None:
            virt = etree.SubElement(element, "capability", type="virt_functions")
            if self.virt_functions.max_count is not None:
                virt.set("maxCount", str(self.virt_functions.max_count))
            for address in self.virt_functions.addresses:
                virt.append(address.to_element(with_type=False))
        if self.iommu_group is not None:
            group = etree.SubElement(element, "iommuGroup", number=str(self.iommu_group.number))
            for address in self.iommu_group.addresses:
                group.append(address.to_element(with_type=False))
        return element


@dataclass(frozen=True)
class NodeDevice(XmlModel):
    """``<device>`` with a PCI capability; ``driver`` is the host driver bound now (vfio-pci, igb...)."""

    name: str
    capability: PciCapability
    parent: str | None = None
    driver: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise XmlModelError("name", "empty device name", value=self.name)

    @classmethod
    def from_element(cls, element: Element) -> NodeDevice:
        expect_tag(element, "device")
        name = element.findtext("name")
        capability = element.find("capability[@type='pci']")
        if name is None or capability is None:
            raise XmlModelError("device", "needs <name> and <capability type='pci'>", line=line_of(element))
        return cls(
            name=name,
            capability=PciCapability.from_element(capability),
            parent=element.findtext("parent"),
            driver=element.findtext("driver/name"),
        )

    def to_element(self) -> Element:
        element = etree.Element("device")
        etree.SubElement(element, "name").text = self.name
        if self.parent is not None:
            etree.SubElement(element, "parent").text = self.parent
        if self.driver is not None:
            driver = etree.SubElement(element, "driver")
            etree.SubElement(driver, "name").text = self.driver
        element.append(self.capability.to_element())
        return element

    @classmethod
    def for_address(cls, capability: PciCapability, **kwargs: str | None) -> NodeDevice:
        """A device named the way libvirt names it: ``pci_0000_01_00_0`` for 0000:01:00.0."""
        return cls(name=capability.address.nodedev_name, capability=capability, **kwargs)
