"""PCI addresses: the ``<address>`` element (host source or guest), BDF strings and nodedev names.

Also the other guest address a PCI hostdev may carry: ``<address type='unassigned'/>`` (libvirt keeps
the device out of the guest's PCI topology); any other type libvirt refuses for PCI host devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Literal

from harness.xml.base import (
    Bound,
    Element,
    compose,
    get_choice,
    get_int,
    line_of,
    parse_libvirt_int,
)
from harness.xml.errors import XmlModelError

__all__ = [
    "ARI_FUNCTION_LIMIT",
    "PCI_LIMITS",
    "GuestAddress",
    "Notation",
    "PciAddress",
    "UnassignedAddress",
    "guest_address_from_element",
]

Notation = Literal["hex", "decimal"]

# Linux writes a 16-bit domain in BDF strings; slot is 5 bits and function 3 bits in the PCI spec.
PCI_LIMITS: dict[str, int] = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 0x7}
# With Alternative Routing-ID Interpretation the device number is gone and the function is 8 bits:
# libvirt's node-device data may carry such functions (nodedev.rng: unsignedLong).
ARI_FUNCTION_LIMIT = 0xFF

_BDF = re.compile(r"^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\Z")
_NODEDEV = re.compile(r"^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])\Z")


@total_ordering
@dataclass(frozen=True)
class PciAddress(Bound):
    """One PCI address. ``notation`` remembers how it was written and is not part of equality.

    ``ari`` lets the function run to 255 (an ARI device in node-device data); a parsed address keeps
    each number's text as written (hex, decimal, octal, upper case) while the number is unchanged.
    Addresses sort by (domain, bus, slot, function): the order of their BDF text, as lspci lists them.
    """

    domain: int
    bus: int
    slot: int
    function: int
    multifunction: bool | None = None
    notation: Notation = field(default="hex", compare=False)
    ari: bool = field(default=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        for part, limit in PCI_LIMITS.items():
            if part == "function" and self.ari:
                limit = ARI_FUNCTION_LIMIT
            value = getattr(self, part)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
                raise XmlModelError(
                    "address", f"PCI {part} must be 0..{limit:#x}", attribute=part, value=value
                )

    # --- conversions -------------------------------------------------------------------------
    @classmethod
    def from_bdf(cls, bdf: str) -> PciAddress:
        """``0000:01:00.0`` (or ``01:00.0``, domain 0) as sysfs and lspci -D write it."""
        match = _BDF.match(bdf.strip())
        if not match:
            raise XmlModelError("address", "not a PCI BDF like 0000:01:00.0", value=bdf)
        domain, bus, slot, function = match.groups()
        return cls(int(domain or "0", 16), int(bus, 16), int(slot, 16), int(function, 16))

    @classmethod
    def from_nodedev_name(cls, name: str) -> PciAddress:
        """``pci_0000_01_00_0`` as ``virsh nodedev-list --cap pci`` prints it."""
        match = _NODEDEV.match(name)
        if not match:
            raise XmlModelError("name", "not a libvirt PCI nodedev name like pci_0000_01_00_0", value=name)
        domain, bus, slot, function = (int(part, 16) for part in match.groups())
        return cls(domain, bus, slot, function)

    @property
    def bdf(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"

    @property
    def nodedev_name(self) -> str:
        return f"pci_{self.domain:04x}_{self.bus:02x}_{self.slot:02x}_{self.function:x}"

    def __str__(self) -> str:
        return self.bdf

    @property
    def slot_address(self) -> tuple[int, int, int]:
        """(domain, bus, slot): the functions of one multi-function device share it."""
        return (self.domain, self.bus, self.slot)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, PciAddress):
            return NotImplemented
        return (*self.slot_address, self.function) < (*other.slot_address, other.function)

    # --- XML -----------------------------------------------------------------------------------
    @classmethod
    def from_element(cls, element: Element) -> PciAddress:
        """Read ``<address domain= bus= slot= function=>`` in hex (0x..) or decimal, like libvirt."""
        address_type = element.get("type")
        if address_type not in (None, "pci"):
            raise XmlModelError(
                "address",
                "only PCI addresses are modelled",
                attribute="type",
                value=address_type,
                line=line_of(element),
            )
        parts: dict[str, int] = {}
        hex_seen = False
        for part in PCI_LIMITS:
            raw = element.get(part)
            hex_seen = hex_seen or (raw is not None and raw.lstrip().lstrip("+").lower().startswith("0x"))
            value = get_int(element, part)
            value = 0 if value is None else value  # libvirt defaults a missing part to 0
            if value > PCI_LIMITS[part]:
                raise XmlModelError(
                    "address",
                    f"PCI {part} must be 0..{PCI_LIMITS[part]:#x}",
                    attribute=part,
                    value=raw,
                    line=line_of(element),
                )
            parts[part] = value
        return cls(
            parts["domain"],
            parts["bus"],
            parts["slot"],
            parts["function"],
            multifunction=_on_off(get_choice(element, "multifunction", ("on", "off"))),
            notation="hex" if hex_seen else "decimal",
            parsed_from=element,
        )

    def to_element(self, *, with_type: bool = True, tag: str = "address") -> Element:
        bound = self.parsed_from
        # As written when parsed (a source address often has no type), else as asked.
        address_type = bound.get("type") if bound is not None else "pci" if with_type else None
        if self.notation == "decimal":
            values = [str(self.domain), str(self.bus), str(self.slot), str(self.function)]
        else:  # libvirt's own format
            values = [f"{self.domain:#06x}", f"{self.bus:#04x}", f"{self.slot:#04x}", f"{self.function:#x}"]
        attributes: list[tuple[str, str | None]] = [("type", address_type)]
        for part, value in zip(PCI_LIMITS, values, strict=True):
            attributes.append((part, _as_written(bound, part, getattr(self, part), value)))
        multifunction = None if self.multifunction is None else ("on" if self.multifunction else "off")
        attributes.append(("multifunction", multifunction))
        return compose(tag, bound, attributes, ())


def _as_written(bound: Element | None, part: str, number: int, formatted: str) -> str | None:
    """Keep the parsed text of an unchanged number (0x1F, 010, 31 all stay as they were)."""
    if bound is None:
        return formatted
    raw = bound.get(part)
    if raw is None:
        return None if number == 0 else formatted  # libvirt reads a missing part as 0
    try:
        return raw if parse_libvirt_int(raw) == number else formatted
    except ValueError:
        return formatted


@dataclass(frozen=True)
class UnassignedAddress(Bound):
    """``<address type='unassigned'/>``: libvirt takes the device from the host but the guest does not
    see it (domain_conf.c allows it for hostdevs only)."""

    def to_element(self) -> Element:
        return compose("address", self.parsed_from, [("type", "unassigned")], ())


GuestAddress = PciAddress | UnassignedAddress


def guest_address_from_element(element: Element) -> GuestAddress:
    """Where the guest sees a device: ``<address type='pci'|'unassigned'|...>``."""
    address_type = element.get("type")
    if address_type == "unassigned":
        return UnassignedAddress(parsed_from=element)
    if address_type not in (None, "pci"):
        # virDomainHostdevDefValidate (domain_validate.c)
        raise XmlModelError(
            "address",
            "PCI host devices must use 'pci' or 'unassigned' address type",
            attribute="type",
            value=address_type,
            line=line_of(element),
        )
    return PciAddress.from_element(element)


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"
