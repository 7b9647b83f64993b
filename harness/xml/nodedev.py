"""``virsh nodedev-dumpxml pci_...``: a PCI device, its IOMMU group and its SR-IOV relations.

libvirt 9 reads the numbers of a node device's PCI address, ``<iommuGroup number=>`` and
``maxCount=`` in base 10 (``virStrToLong_ui``): leading blanks and ``+`` allowed, leading zeros
too (``08`` is 8, not octal), nothing after the digits; the function may reach 255 on an ARI
device. libvirt does not range-check the address numbers below 2**32 (it takes bus 300); the models
keep the PCI limits for domain (16 bits as Linux writes it), bus and slot, which sysfs never exceeds.
``<product id=>`` and ``<vendor id=>`` are base 16 (``0x0FFE``, ``0ffe`` and ``ffe`` are one id) and
``<class>`` a signed base-16 int (negative means no class); every number is kept as written.
Other capabilities (``pci-express``, ``pci-bridge``, ``mdev_types``), ``<numa>`` and the rest stay in
the document as written. A node device that is not a PCI function (a ``net``, ``usb_device``,
``scsi_host``...) is a :class:`NonPciNodeDevice`: its name, parent and driver, the rest kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypedDict

from harness.xml.address import ARI_FUNCTION_LIMIT, PCI_LIMITS, PciAddress
from harness.xml.base import (
    Bound,
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_int,
    int_as_written,
    line_of,
    located_at,
    origin_of,
    parse_libvirt_uint,
    required_attr,
    text_child,
)
from harness.xml.errors import XmlModelError

__all__ = [
    "AnyNodeDevice",
    "IommuGroup",
    "NodeDevice",
    "NonPciNodeDevice",
    "PciCapability",
    "PciId",
    "VirtFunctions",
    "node_device_from_element",
    "pci_class_number",
]

# virStrToLong_i(text, NULL, 16): strtol's blanks and sign, 0x optional, a C int, whole text.
_SIGNED_HEX = re.compile(r"^[ \t\n\v\f\r]*([+-]?)(?:0[xX])?([0-9a-fA-F]+)\Z")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_PCI_CLASS_MAX = 0xFFFFFF
_NODEDEV_PCI_LIMITS = {**PCI_LIMITS, "function": ARI_FUNCTION_LIMIT}
# Children of <capability type='pci'> the model reads, and the nested capabilities among them.
_PCI_CAPABILITY_CHILDREN = ("class", *PCI_LIMITS, "product", "vendor", "iommuGroup")
_NESTED_CAPABILITIES = ("phys_function", "virt_functions")


@dataclass(frozen=True)
class PciId(Bound):
    """``<product id='0x10c9'>name</product>`` or the same for ``<vendor>``; the name may be absent.

    ``id`` is the text as written; libvirt reads it base 16 (virNodeDevCapsDefParseHexId) and
    writes it back as ``0x%04x``, so ``0x0FFE``, ``0X0ffe`` and ``ffe`` are all :attr:`number` 0xffe.
    """

    id: str
    name: str | None = None

    def __post_init__(self) -> None:
        try:
            parse_libvirt_uint(self.id, 16)
        except ValueError:
            raise XmlModelError(
                "product",
                "id must be a hex number like 0x10c9 (libvirt reads it in base 16, at most 0xffffffff)",
                attribute="id",
                value=self.id,
            ) from None

    @property
    def number(self) -> int:
        return parse_libvirt_uint(self.id, 16)


def pci_class_number(text: str) -> int | None:
    """``<class>`` as libvirt reads it: signed base 16; empty or negative is no class (None)."""
    if text == "":
        return None  # virXPathString gives NULL for an empty element
    match = _SIGNED_HEX.match(text)
    value = None if match is None else int(match.group(1) + match.group(2), 16)
    if value is None or not _INT_MIN <= value <= _PCI_CLASS_MAX:
        raise ValueError(text)
    return None if value < 0 else value


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
    return int_as_written(None if bound is None else bound.findtext(tag), number, 10)


def _attribute_as_written(bound: Element | None, name: str, number: int) -> str:
    return int_as_written(None if bound is None else bound.get(name), number, 10)


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
        if self.pci_class is not None:
            try:
                pci_class_number(self.pci_class)
            except ValueError:
                raise XmlModelError(
                    "class",
                    "must be a hex number like 0x020000 (libvirt reads it in base 16), at most 0xffffff",
                    value=self.pci_class,
                ) from None

    @classmethod
    def from_element(cls, element: Element) -> PciCapability:
        parts: dict[str, int] = {}
        for part, limit in _NODEDEV_PCI_LIMITS.items():
            child = element.find(part)
            if child is None or child.text is None:
                raise XmlModelError("capability", "missing", attribute=f"<{part}>", line=line_of(element))
            try:
                value = parse_libvirt_uint(child.text, 10)
            except ValueError:
                raise XmlModelError(
                    part,
                    f"invalid PCI {part}: libvirt reads node-device numbers as decimal",
                    value=child.text,
                    line=line_of(child),
                ) from None
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
                get_int(virt, "maxCount", base=10),
                parsed_from=virt,
            ),
            iommu_group=None
            if group is None
            else IommuGroup(
                get_int(group, "number", required=True, base=10) or 0,
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
            max_count = (
                None
                if functions.max_count is None
                else _attribute_as_written(functions.parsed_from, "maxCount", functions.max_count)
            )
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
                [("number", _attribute_as_written(group.parsed_from, "number", group.number))],
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
        identity = _identity(element)
        capability = element.find("capability[@type='pci']")
        if capability is None:
            kinds = ", ".join(f"'{kind}'" for kind in _capability_types(element)) or "none"
            raise XmlModelError(
                "device",
                f"{identity['name']} is not a PCI device (capability type {kinds}, no <capability type='pci'>); "
                "read it with NonPciNodeDevice or node_device_from_element",
                line=line_of(element),
            )
        return cls(**identity, capability=PciCapability.from_element(capability), parsed_from=element)

    def to_element(self) -> Element:
        bound = self.parsed_from
        children = _identity_children(bound, self.name, self.parent, self.driver)
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


class _Identity(TypedDict):
    """What every ``<device>`` says of itself, read by :func:`_identity` and written by ``_identity_children``."""

    name: str
    parent: str | None
    driver: str | None


def _identity(element: Element) -> _Identity:
    """Name, parent and driver, with libvirt's ``no device name`` check (virNodeDeviceDefParseXML)."""
    expect_tag(element, "device")
    name = element.findtext("name")
    if not name:
        raise XmlModelError("device", "no device name: <name> is missing or empty", line=line_of(element))
    return _Identity(name=name, parent=element.findtext("parent"), driver=element.findtext("driver/name"))


def _capability_types(element: Element) -> tuple[str, ...]:
    return tuple(child.get("type") or "" for child in element.findall("capability"))


def _is_capability(child: Element) -> bool:
    return child.tag == "capability"


@dataclass(frozen=True)
class NonPciNodeDevice(XmlModel):
    """A node device that is not a PCI function: ``net``, ``usb_device``, ``scsi_host``, ``system``...

    The harness reads its name, parent, host driver and the types of its capabilities; what each
    capability holds (an interface name, a USB bus, a SCSI host number) is kept as written.
    """

    name: str
    capability_types: tuple[str, ...]
    parent: str | None = None
    driver: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise XmlModelError("name", "empty device name", value=self.name)
        if not self.capability_types:
            # virNodeDeviceDefParseXML: "no device capabilities for '%s'"
            raise XmlModelError(
                "device", f"no device capabilities for '{self.name}'", attribute="<capability>"
            )
        if "pci" in self.capability_types:
            raise XmlModelError(
                "capability",
                "a PCI device is a NodeDevice, not a NonPciNodeDevice",
                attribute="type",
                value="pci",
            )

    @classmethod
    def from_element(cls, element: Element) -> NonPciNodeDevice:
        identity = _identity(element)
        with located_at(element):
            return cls(**identity, capability_types=_capability_types(element), parsed_from=element)

    def to_element(self) -> Element:
        bound = self.parsed_from
        children = _identity_children(bound, self.name, self.parent, self.driver)
        claimed: set[int] = set()
        for kind in self.capability_types:
            origin = None
            if bound is not None:
                for index, candidate in enumerate(bound.findall("capability")):
                    if index not in claimed and candidate.get("type") == kind:
                        claimed.add(index)
                        origin = candidate
                        break
            # What a capability holds is not modelled: compose keeps all of it.
            children.append((compose("capability", origin, [("type", kind)], ()), origin))
        return compose(
            "device",
            bound,
            (),
            children,
            owns=lambda child: child.tag in ("name", "parent", "driver") or _is_capability(child),
        )


def _identity_children(
    bound: Element | None, name: str, parent: str | None, driver: str | None
) -> list[Child]:
    children = [text_child(bound, "name", name)]
    if parent is not None:
        children.append(text_child(bound, "parent", parent))
    if driver is not None:
        origin = origin_of(bound, "driver")
        driver_name = text_child(origin, "name", driver)
        built = compose("driver", origin, (), [driver_name], owns=lambda child: child.tag == "name")
        children.append((built, origin))
    return children


AnyNodeDevice = NodeDevice | NonPciNodeDevice


def node_device_from_element(element: Element) -> AnyNodeDevice:
    """A ``<device>`` document: a :class:`NodeDevice` if it has a PCI capability, else a non-PCI one."""
    expect_tag(element, "device")
    if element.find("capability[@type='pci']") is not None:
        return NodeDevice.from_element(element)
    return NonPciNodeDevice.from_element(element)
