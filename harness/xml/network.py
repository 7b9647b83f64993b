"""``<network>`` with ``<forward mode='hostdev'>``: a pool of SR-IOV VFs, by PF name or by VF addresses."""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass, field

from lxml import etree

from harness.xml.address import PciAddress
from harness.xml.base import (
    Element,
    XmlModel,
    expect_tag,
    get_int,
    get_yes_no,
    line_of,
    required_attr,
    set_yes_no,
)
from harness.xml.errors import XmlModelError

__all__ = ["FORWARD_MODES", "Forward", "Network"]

# libvirt 9's virNetworkForwardType; anything else is refused by virsh net-define.
FORWARD_MODES: tuple[str, ...] = (
    "nat",
    "route",
    "open",
    "bridge",
    "private",
    "vepa",
    "passthrough",
    "hostdev",
)


@dataclass(frozen=True)
class Forward:
    """``<forward mode= managed=>`` with an optional ``<pf dev=>`` and VF ``<address>`` list."""

    mode: str = "hostdev"
    managed: bool | None = None
    pf: str | None = None
    addresses: tuple[PciAddress, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in FORWARD_MODES:
            raise XmlModelError(
                "forward",
                f"unknown forward mode; libvirt knows {', '.join(FORWARD_MODES)}",
                attribute="mode",
                value=self.mode,
            )
        if self.addresses and self.mode != "hostdev":
            raise XmlModelError(
                "forward", "PCI <address> entries need mode='hostdev'", attribute="mode", value=self.mode
            )
        seen: set[PciAddress] = set()
        for address in self.addresses:
            if address in seen:
                raise XmlModelError("address", "VF listed twice in <forward>", value=address.bdf)
            seen.add(address)
        if self.pf is not None and not self.pf:
            raise XmlModelError("pf", "empty device name", attribute="dev", value=self.pf)

    @classmethod
    def from_element(cls, element: Element) -> Forward:
        pfs = element.findall("pf")
        if len(pfs) > 1:
            raise XmlModelError("forward", "only one <pf> is allowed", attribute="<pf>", line=line_of(pfs[1]))
        try:
            return cls(
                mode=element.get("mode", "nat"),
                managed=get_yes_no(element, "managed"),
                pf=required_attr(pfs[0], "dev") if pfs else None,
                addresses=tuple(PciAddress.from_element(a) for a in element.findall("address")),
            )
        except XmlModelError as error:
            error.line = error.line or line_of(element)
            raise

    def to_element(self) -> Element:
        element = etree.Element("forward", mode=self.mode)
        set_yes_no(element, "managed", self.managed)
        if self.pf is not None:
            etree.SubElement(element, "pf", dev=self.pf)
        for address in self.addresses:
            element.append(address.to_element(with_type=True))
        return element


@dataclass(frozen=True)
class Network(XmlModel):
    """A libvirt network; ``connections`` is what net-dumpxml reports for a running network."""

    name: str
    forward: Forward | None = None
    uuid: str | None = None
    connections: int | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\n" in self.name:
            raise XmlModelError("name", "a network name is non-empty, one line, without '/'", value=self.name)
        if self.uuid is not None:
            try:
                uuid_module.UUID(self.uuid)
            except ValueError:
                raise XmlModelError("uuid", "not a UUID", value=self.uuid) from None
        if self.connections is not None and self.connections < 0:
            raise XmlModelError(
                "network", "must be 0 or more", attribute="connections", value=self.connections
            )

    @classmethod
    def from_element(cls, element: Element) -> Network:
        expect_tag(element, "network")
        name = element.findtext("name")
        if name is None:
            raise XmlModelError("network", "missing <name>", line=line_of(element))
        forward = element.find("forward")
        try:
            return cls(
                name=name,
                forward=None if forward is None else Forward.from_element(forward),
                uuid=element.findtext("uuid"),
                connections=get_int(element, "connections"),
            )
        except XmlModelError as error:
            error.line = error.line or line_of(element)
            raise

    def to_element(self) -> Element:
        element = etree.Element("network")
        if self.connections is not None:
            element.set("connections", str(self.connections))
        etree.SubElement(element, "name").text = self.name
        if self.uuid is not None:
            etree.SubElement(element, "uuid").text = self.uuid
        if self.forward is not None:
            element.append(self.forward.to_element())
        return element
