"""PCI addresses: the ``<address>`` element (host source or guest), BDF strings and nodedev names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from harness.xml.base import Element, get_choice, get_int, line_of
from harness.xml.errors import XmlModelError

__all__ = ["PCI_LIMITS", "Notation", "PciAddress", "bdf_to_nodedev_name", "nodedev_name_to_bdf"]

Notation = Literal["hex", "decimal"]

# Linux writes a 16-bit domain in BDF strings; slot is 5 bits and function 3 bits in the PCI spec.
PCI_LIMITS: dict[str, int] = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 0x7}

_BDF = re.compile(r"^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_NODEDEV = re.compile(r"^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$")


@dataclass(frozen=True)
class PciAddress:
    """One PCI address. ``notation`` remembers how it was written and is not part of equality."""

    domain: int
    bus: int
    slot: int
    function: int
    multifunction: bool | None = None
    notation: Notation = field(default="hex", compare=False)

    def __post_init__(self) -> None:
        for part, limit in PCI_LIMITS.items():
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
            hex_seen = hex_seen or (raw is not None and raw.strip().lower().startswith("0x"))
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
        )

    def to_element(self, *, with_type: bool = True, tag: str = "address") -> Element:
        element = etree.Element(tag)
        if with_type:
            element.set("type", "pci")
        if self.notation == "decimal":
            values = [str(self.domain), str(self.bus), str(self.slot), str(self.function)]
        else:  # libvirt's own format
            values = [f"{self.domain:#06x}", f"{self.bus:#04x}", f"{self.slot:#04x}", f"{self.function:#x}"]
        for part, value in zip(PCI_LIMITS, values, strict=True):
            element.set(part, value)
        if self.multifunction is not None:
            element.set("multifunction", "on" if self.multifunction else "off")
        return element


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def bdf_to_nodedev_name(bdf: str) -> str:
    """``0000:01:00.0`` -> ``pci_0000_01_00_0``."""
    return PciAddress.from_bdf(bdf).nodedev_name


def nodedev_name_to_bdf(name: str) -> str:
    """``pci_0000_01_00_0`` -> ``0000:01:00.0``."""
    return PciAddress.from_nodedev_name(name).bdf
