"""What isolation a PCI function offers, read from its configuration space (sysfs ``config``).

Three facts decide how the kernel groups devices for the IOMMU (drivers/pci/pci.c ``pci_acs_enabled``,
drivers/iommu/iommu.c ``pci_device_group``): whether a function belongs to a multi-function device (header
type bit 7), its PCI Express port type (PCIe capability 0x10), and its Access Control Services extended
capability (0x000D) with the features it has and has enabled. These are a few fixed offsets of the PCI
specification; no maintained Python library parses them, so this module does, and no more than that.

The extended capabilities live above byte 255: sysfs gives them only to root (and only on PCIe with
MMCONFIG). When they cannot be read, ACS is reported as unknown, never as absent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

HEADER_TYPE = 0x0E
MULTIFUNCTION_BIT = 0x80
STATUS = 0x06
STATUS_CAPABILITIES_LIST = 0x10
CAPABILITIES_POINTER = 0x34
CAP_ID_PCIE = 0x10
EXTENDED_CAPABILITIES = 0x100
EXT_CAP_ID_ACS = 0x000D
# ACS capability/control bits (PCIe base spec 7.7.8): the four the kernel requires for isolation.
ACS_SOURCE_VALIDATION = 0x01
ACS_TRANSLATION_BLOCKING = 0x02
ACS_REQUEST_REDIRECT = 0x04
ACS_COMPLETION_REDIRECT = 0x08
ACS_UPSTREAM_FORWARDING = 0x10
ACS_EGRESS_CONTROL = 0x20
REQUIRED_ACS = (
    ACS_SOURCE_VALIDATION | ACS_REQUEST_REDIRECT | ACS_COMPLETION_REDIRECT | ACS_UPSTREAM_FORWARDING
)
ACS_NAMES = {
    ACS_SOURCE_VALIDATION: "SrcValid",
    ACS_REQUEST_REDIRECT: "ReqRedir",
    ACS_COMPLETION_REDIRECT: "CmpltRedir",
    ACS_UPSTREAM_FORWARDING: "UpstreamFwd",
}


class PortType(enum.IntEnum):
    """PCI Express Capabilities register, Device/Port Type (bits 7:4)."""

    ENDPOINT = 0x0
    LEGACY_ENDPOINT = 0x1
    ROOT_PORT = 0x4
    UPSTREAM_PORT = 0x5
    DOWNSTREAM_PORT = 0x6
    PCIE_TO_PCI_BRIDGE = 0x7
    PCI_TO_PCIE_BRIDGE = 0x8
    INTEGRATED_ENDPOINT = 0x9
    EVENT_COLLECTOR = 0xA


@dataclass(frozen=True)
class Acs:
    capabilities: int
    control: int

    def missing(self) -> list[str]:
        """Required ACS features this function has but has not enabled (the kernel's test).

        A feature absent from the capability register counts as hard-wired on (pci_acs_flags_enabled).
        """
        required = REQUIRED_ACS & self.capabilities
        return [name for bit, name in ACS_NAMES.items() if required & bit and not self.control & bit]


@dataclass(frozen=True)
class PciConfig:
    """The isolation facts of one function; ``extended_readable`` False means ACS is unknown."""

    multifunction: bool
    port_type: PortType | None  # None: conventional PCI (no PCIe capability)
    acs: Acs | None
    extended_readable: bool

    def acs_isolates(self) -> bool | None:
        """Whether the kernel counts this function as isolating (pci_acs_enabled), None if unknown."""
        if self.port_type is None or self.port_type in (
            PortType.PCIE_TO_PCI_BRIDGE,
            PortType.PCI_TO_PCIE_BRIDGE,
            PortType.EVENT_COLLECTOR,
        ):
            return False  # conventional PCI and PCI bridges never have ACS
        checked = self.port_type in (PortType.ROOT_PORT, PortType.DOWNSTREAM_PORT) or self.multifunction
        if not checked:
            return True  # a single-function endpoint has nothing to isolate from
        if not self.extended_readable:
            return None
        return self.acs is not None and not self.acs.missing()


def _word(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


def _dword(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def parse_config(data: bytes) -> PciConfig | None:
    """Parse a function's configuration space; None when too little of it is readable."""
    if len(data) < 64:
        return None
    multifunction = bool(data[HEADER_TYPE] & MULTIFUNCTION_BIT)
    port_type = None
    if _word(data, STATUS) & STATUS_CAPABILITIES_LIST:
        pointer, seen = data[CAPABILITIES_POINTER] & 0xFC, set()
        while pointer and pointer not in seen and pointer + 4 <= len(data):
            seen.add(pointer)
            if data[pointer] == CAP_ID_PCIE:
                kind = (_word(data, pointer + 2) >> 4) & 0xF
                port_type = PortType(kind) if kind in PortType._value2member_map_ else PortType.ENDPOINT
                break
            pointer = data[pointer + 1] & 0xFC
    extended = len(data) > EXTENDED_CAPABILITIES and port_type is not None
    acs = None
    offset, seen_ext = EXTENDED_CAPABILITIES, set()
    while extended and offset and offset not in seen_ext and offset + 8 <= len(data):
        seen_ext.add(offset)
        header = _dword(data, offset)
        if header in (0, 0xFFFFFFFF):
            break
        if header & 0xFFFF == EXT_CAP_ID_ACS:
            acs = Acs(_word(data, offset + 4), _word(data, offset + 6))
            break
        offset = (header >> 20) & 0xFFC
    return PciConfig(multifunction, port_type, acs, extended)
