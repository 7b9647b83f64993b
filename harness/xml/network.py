"""``<network>`` with ``<forward mode='hostdev'>``: a pool of SR-IOV VFs, by PF name or by VF addresses.

What the models do not read (``<interface dev>`` pools, ``<driver>`` in ``<forward>``, portgroups,
virtualports, ``<ip>``, ...) stays in the document; libvirt's parser checks on hostdev networks are
mirrored (network_conf.c: one ``<pf>``, each VF once, typed VF addresses, no bridge name, no
``dev=`` beside ``<pf>``/``<address>``, the vlan rules).
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass, field

from harness.xml.address import PciAddress
from harness.xml.base import (
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_int,
    get_yes_no,
    line_of,
    located_at,
    origin_of,
    required_attr,
    text_child,
    yes_no,
)
from harness.xml.errors import XmlModelError
from harness.xml.interface import Vlan

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
class Forward(XmlModel):
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
        seen: set[PciAddress] = set()
        for address in self.addresses:
            if address in seen:
                raise XmlModelError(
                    "address",
                    "VF listed twice in <forward>: a PCI device can only be listed once",
                    value=address.bdf,
                    line=line_of(address.parsed_from) if address.parsed_from is not None else None,
                )
            seen.add(address)
        if self.pf is not None and not self.pf:
            raise XmlModelError("pf", "empty device name", attribute="dev", value=self.pf)

    @classmethod
    def from_element(cls, element: Element) -> Forward:
        pfs = element.findall("pf")
        if len(pfs) > 1:
            raise XmlModelError("forward", "only one <pf> is allowed", attribute="<pf>", line=line_of(pfs[1]))
        addresses = element.findall("address")
        if element.get("dev") is not None and (pfs or addresses):
            raise XmlModelError(
                "forward",
                "the 'dev' attribute cannot be used when <address> or <pf> sub-elements are present",
                attribute="dev",
                value=element.get("dev"),
                line=line_of(element),
            )
        for address in addresses:
            if address.get("type") is None:
                raise XmlModelError(
                    "address",
                    "missing address type: a VF in <forward> needs type='pci'",
                    attribute="type",
                    line=line_of(address),
                )
        with located_at(element):
            return cls(
                mode=element.get("mode", "nat"),
                managed=get_yes_no(element, "managed"),
                pf=required_attr(pfs[0], "dev") if pfs else None,
                addresses=tuple(PciAddress.from_element(a) for a in addresses),
                parsed_from=element,
            )

    def to_element(self) -> Element:
        bound = self.parsed_from
        children: list[Child] = []
        if self.pf is not None:
            origin = origin_of(bound, "pf")
            children.append((compose("pf", origin, [("dev", self.pf)], ()), origin))
        children += [(a.to_element(with_type=True), a.parsed_from) for a in self.addresses]
        return compose(
            "forward",
            bound,
            [("mode", self.mode), ("managed", yes_no(self.managed))],
            children,
            owns=lambda child: child.tag in ("pf", "address"),
        )


@dataclass(frozen=True)
class Network(XmlModel):
    """A libvirt network; ``connections`` is what net-dumpxml reports for a running network."""

    name: str
    forward: Forward | None = None
    uuid: str | None = None
    connections: int | None = field(default=None)
    vlan: Vlan | None = None

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
        bridge = element.find("bridge")
        if (
            forward is not None
            and forward.get("mode") == "hostdev"
            and bridge is not None
            and bridge.get("name") is not None
        ):
            raise XmlModelError(
                "bridge",
                "bridge name not allowed in hostdev mode",
                attribute="name",
                value=bridge.get("name"),
                line=line_of(bridge),
            )
        vlan = element.find("vlan")
        with located_at(element):
            return cls(
                name=name,
                forward=None if forward is None else Forward.from_element(forward),
                uuid=element.findtext("uuid"),
                connections=get_int(element, "connections"),
                vlan=None if vlan is None else Vlan.from_element(vlan),
                parsed_from=element,
            )

    def to_element(self) -> Element:
        bound = self.parsed_from
        children = [text_child(bound, "name", self.name)]
        if self.uuid is not None:
            children.append(text_child(bound, "uuid", self.uuid))
        for part in (self.forward, self.vlan):
            if part is not None:
                children.append((part.to_element(), part.parsed_from))
        connections = None if self.connections is None else str(self.connections)
        return compose(
            "network",
            bound,
            [("connections", connections)],
            children,
            owns=lambda child: child.tag in ("name", "uuid", "forward", "vlan"),
        )
