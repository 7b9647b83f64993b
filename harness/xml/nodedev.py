"""``virsh nodedev-dumpxml pci_...``: a PCI device, its IOMMU group and its SR-IOV relations.

libvirt reads the numbers of a node device's PCI address with XPath ``number()``: decimal only,
leading zeros allowed (``08`` is 8, not octal), and the function may reach 255 on an ARI device.
libvirt does not range-check these numbers at all (it takes bus 300); the models keep the PCI limits
for domain (16 bits as Linux writes it), bus and slot, which sysfs never exceeds.
Other capabilities (``pci-express``, ``pci-bridge``, ``mdev_types``), ``<numa>`` and the rest stay in
the document as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.xml.address import ARI_FUNCTION_LIMIT, PCI_LIMITS, PciAddress
from harness.xml.base import (
    Bound,
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_int,
    line_of,
    origin_of,
    required_attr,
    text_child,
)
from harness.xml.errors import XmlModelError

__all__ = ["IommuGroup", "NodeDevice", "PciCapability", "PciId", "VirtFunctions"]

_HEX_ID = re.compile(r"^0x[0-9a-f]{4}\Z")
_DECIMAL = re.compile(r"^[0-9]+\Z")
_NODEDEV_PCI_LIMITS = {**PCI_LIMITS, "function": ARI_FUNCTION_LIMIT}
# Children of <capability type='pci'> the model reads, and the nested capabilities among them.
_PCI_CAPABILITY_CHILDREN = ("class", *PCI_LIMITS, "product", "vendor", "iommuGroup")
_NESTED_CAPABILITIES = ("phys_function", "virt_functions")


@dataclass(frozen=True)
class PciId(Bound):
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
class IommuGroup(Bound):
    number: int
    addresses: tuple[PciAddress, ...]

    def __post_init__(self) -> None:
        if self.number < 0:
            raise XmlModelError("iommuGroup", "must be 0 or more", attribute="number", value=self.number)
        if not self.addresses:
            raise XmlModelError("iommuGroup", "a group has at least one member", attribute="<address>")


@dataclass(frozen=True)
class VirtFunctions(Bound):
    """``<capability type='virt_functions' maxCount=..>``: the VFs a PF has (and could have)."""

    addresses: tuple[PciAddress, ...]
    max_count: int | None = None

    def __post_init__(self) -> None:
        if self.max_count is not None and self.max_count < len(self.addresses):
            raise XmlModelError(
                "capability", "fewer than the VFs listed", attribute="maxCount", value=self.max_count
            )


def _address_children(addresses: tuple[PciAddress, ...]) -> list[Child]:
    return [(address.to_element(with_type=False), address.parsed_from) for address in addresses]


def _is_address(child: Element) -> bool:
    return child.tag == "address"


def _owned_by_pci_capability(child: Element) -> bool:
    if child.tag == "capability":
        return child.get("type") in _NESTED_CAPABILITIES
    return child.tag in _PCI_CAPABILITY_CHILDREN


def _decimal_as_written(bound: Element | None, tag: str, number: int) -> str:
    raw = bound.findtext(tag) if bound is not None else None
    return raw if raw is not None and _DECIMAL.match(raw) and int(raw) == number else str(number)


@dataclass(frozen=True)
class PciCapability(Bound):
    address: PciAddress
    product: PciId
    vendor: PciId
    pci_class: str | None = None
    phys_function: PciAddress | None = None
    virt_functions: VirtFunctions | None = None
    iommu_group: IommuGroup | None = None

    def __post_init__(self) -> None:
        if self.pci_class is not None and not re.match(r"^0x[0-9a-fA-F]{6}\Z", self.pci_class):
            raise XmlModelError("class", "must be 0x and six hex digits", value=self.pci_class)

    @classmethod
    def from_element(cls, element: Element) -> PciCapability:
        parts: dict[str, int] = {}
        for part, limit in _NODEDEV_PCI_LIMITS.items():
            child = element.find(part)
            if child is None or child.text is None:
                raise XmlModelError("capability", "missing", attribute=f"<{part}>", line=line_of(element))
            if not _DECIMAL.match(child.text):
                raise XmlModelError(
                    part,
                    f"invalid PCI {part}: libvirt reads node-device numbers as decimal",
                    value=child.text,
                    line=line_of(child),
                )
            value = int(child.text, 10)
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
                ids.append(PciId(required_attr(child, "id"), child.text, parsed_from=child))
            except XmlModelError as error:
                error.element, error.line = tag, line_of(child)
                raise
        phys = element.find("capability[@type='phys_function']/address")
        virt = element.find("capability[@type='virt_functions']")
        group = element.find("iommuGroup")
        return cls(
            address=PciAddress(
                parts["domain"],
                parts["bus"],
                parts["slot"],
                parts["function"],
                notation="decimal",
                ari=parts["function"] > PCI_LIMITS["function"],
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
                parsed_from=virt,
            ),
            iommu_group=None
            if group is None
            else IommuGroup(
                get_int(group, "number", required=True) or 0,
                tuple(PciAddress.from_element(a) for a in group.findall("address")),
                parsed_from=group,
            ),
            parsed_from=element,
        )

    def to_element(self) -> Element:
        # nodedev.rng is a sequence here, not an interleave: keep libvirt's order.
        bound = self.parsed_from
        children: list[Child] = []
        if self.pci_class is not None:
            children.append(text_child(bound, "class", self.pci_class))
        for part in PCI_LIMITS:
            number = getattr(self.address, part)
            children.append(text_child(bound, part, _decimal_as_written(bound, part, number)))
        for tag, pci_id in (("product", self.product), ("vendor", self.vendor)):
            built = compose(
                tag, pci_id.parsed_from, [("id", pci_id.id)], (), text=pci_id.name, owns_text=True
            )
            children.append((built, pci_id.parsed_from))
        if self.phys_function is not None:
            origin = None if bound is None else bound.find("capability[@type='phys_function']")
            address = (self.phys_function.to_element(with_type=False), self.phys_function.parsed_from)
            built = compose("capability", origin, [("type", "phys_function")], [address], owns=_is_address)
            children.append((built, origin))
        if self.virt_functions is not None:
            functions = self.virt_functions
            max_count = None if functions.max_count is None else str(functions.max_count)
            built = compose(
                "capability",
                functions.parsed_from,
                [("type", "virt_functions"), ("maxCount", max_count)],
                _address_children(functions.addresses),
                owns=_is_address,
            )
            children.append((built, functions.parsed_from))
        if self.iommu_group is not None:
            group = self.iommu_group
            built = compose(
                "iommuGroup",
                group.parsed_from,
                [("number", str(group.number))],
                _address_children(group.addresses),
                owns=_is_address,
            )
            children.append((built, group.parsed_from))
        return compose("capability", bound, [("type", "pci")], children, owns=_owned_by_pci_capability)


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
            parsed_from=element,
        )

    def to_element(self) -> Element:
        bound = self.parsed_from
        children = [text_child(bound, "name", self.name)]
        if self.parent is not None:
            children.append(text_child(bound, "parent", self.parent))
        if self.driver is not None:
            origin = origin_of(bound, "driver")
            name = text_child(origin, "name", self.driver)
            built = compose("driver", origin, (), [name], owns=lambda child: child.tag == "name")
            children.append((built, origin))
        children.append((self.capability.to_element(), self.capability.parsed_from))
        return compose(
            "device",
            bound,
            (),
            children,
            owns=lambda child: (
                child.tag in ("name", "parent", "driver")
                or (child.tag == "capability" and child.get("type") == "pci")
            ),
        )

    @classmethod
    def for_address(
        cls, capability: PciCapability, *, parent: str | None = None, driver: str | None = None
    ) -> NodeDevice:
        """A device named the way libvirt names it: ``pci_0000_01_00_0`` for 0000:01:00.0."""
        return cls(name=capability.address.nodedev_name, capability=capability, parent=parent, driver=driver)
