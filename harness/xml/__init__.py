"""XML models that parse and build libvirt's domain, network and nodedev documents for PCI assignment.

Each model is a frozen dataclass: ``Model.parse(text)`` / ``Model.from_element(el)`` read it,
``model.to_element()`` / ``model.to_xml()`` build it with lxml, and the constructor validates it.
A parsed model stays bound to its element (``parsed_from``), so ``dataclasses.replace`` on one field
and ``to_xml()`` keep everything the model does not read; ``Model.parse(text, strict=True)`` and
``unknown_content(model)`` name that content instead. This package imports no libvirt: the libvirt
oracle lives in ``harness.libvirt.xml_oracle``.
"""

from __future__ import annotations

from harness.xml.address import (
    PciAddress,
    UnassignedAddress,
)
from harness.xml.base import parse_document, unknown_content
from harness.xml.domain import Device, Domain
from harness.xml.errors import MalformedXmlError, XmlModelError
from harness.xml.hostdev import PciHostdev, Rom
from harness.xml.interface import (
    HostdevInterface,
    NetworkInterface,
    VirtualPort,
    VirtualPort8021Qbg,
    VirtualPort8021Qbh,
    Vlan,
    VlanTag,
)
from harness.xml.network import Forward, Network
from harness.xml.nodedev import (
    IommuGroup,
    NodeDevice,
    NonPciNodeDevice,
    PciCapability,
    PciId,
    VirtFunctions,
)

__all__ = [
    "Device",
    "Domain",
    "Forward",
    "HostdevInterface",
    "IommuGroup",
    "MalformedXmlError",
    "Network",
    "NetworkInterface",
    "NodeDevice",
    "NonPciNodeDevice",
    "PciAddress",
    "PciCapability",
    "PciHostdev",
    "PciId",
    "Rom",
    "UnassignedAddress",
    "VirtFunctions",
    "VirtualPort",
    "VirtualPort8021Qbg",
    "VirtualPort8021Qbh",
    "Vlan",
    "VlanTag",
    "XmlModelError",
    "parse_document",
    "unknown_content",
]
