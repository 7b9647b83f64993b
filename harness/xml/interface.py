"""``<interface type='hostdev'>`` (an SR-IOV VF with MAC, VLAN and virtualport) and ``type='network'``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from harness.xml.address import UnassignedAddress
from harness.xml.base import (
    Base,
    Bound,
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_choice,
    get_int,
    int_as_written,
    line_of,
    located_at,
    origin_of,
    required_attr,
)
from harness.xml.errors import XmlModelError
from harness.xml.hostdev import PciHostdevSource

__all__ = [
    "HostdevInterface",
    "NativeMode",
    "NetworkInterface",
    "VirtualPort",
    "VirtualPort8021Qbg",
    "VirtualPort8021Qbh",
    "Vlan",
    "VlanTag",
    "check_mac",
    "check_teaming",
    "mac_child",
]

NativeMode = Literal["tagged", "untagged"]
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
_PROFILE_ID_MAX = 39  # IFLA_PORT_PROFILE is 40 bytes with the NUL


def _written(bound: Element | None, name: str, number: int, base: Base) -> str:
    return int_as_written(None if bound is None else bound.get(name), number, base)


def check_mac(mac: str, *, line: int | None = None) -> str:
    """Return ``mac`` if libvirt would take it: six hex octets, unicast (low bit of octet 1 clear)."""
    if not _MAC.match(mac):
        raise XmlModelError(
            "mac", "not a MAC address like 52:54:00:6d:90:02", attribute="address", value=mac, line=line
        )
    if int(mac[:2], 16) & 1:
        raise XmlModelError(
            "mac",
            "multicast MAC address; a NIC needs a unicast one",
            attribute="address",
            value=mac,
            line=line,
        )
    return mac


@dataclass(frozen=True)
class VlanTag(Bound):
    id: int
    native_mode: NativeMode | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 4095:
            raise XmlModelError("tag", "VLAN id must be 0..4095", attribute="id", value=self.id)
        if self.native_mode not in (None, "tagged", "untagged"):
            raise XmlModelError(
                "tag", "expected tagged or untagged", attribute="nativeMode", value=self.native_mode
            )


@dataclass(frozen=True)
class Vlan(Bound):
    """``<vlan trunk='yes'><tag id=.. nativeMode=../></vlan>``.

    ``trunk`` False means no attribute (or ``trunk='no'`` as parsed, which is kept): libvirt makes a
    vlan with several tags, or with a nativeMode, a trunk by itself (virNetDevVlanParse); only an
    explicit ``trunk='no'`` contradicting them is refused, which ``from_element`` checks.
    """

    tags: tuple[VlanTag, ...]
    trunk: bool = False

    def __post_init__(self) -> None:
        if not self.tags:
            raise XmlModelError(
                "vlan", "missing tag id: each <vlan> needs at least one <tag id='n'/>", attribute="<tag>"
            )
        natives = [tag for tag in self.tags if tag.native_mode is not None]
        if len(natives) > 1:
            raise XmlModelError(
                "vlan",
                "duplicate native vlan setting: only one tag may set nativeMode",
                attribute="nativeMode",
                value=natives[1].native_mode,
            )
        explicit_no = self.parsed_from is not None and self.parsed_from.get("trunk") == "no"
        if explicit_no and len(self.tags) > 1:
            raise XmlModelError(
                "vlan", "trunk='no' is invalid with more than one <tag>", attribute="trunk", value="no"
            )
        if explicit_no and natives:
            raise XmlModelError(
                "vlan", "trunk='no' is not allowed with a native vlan id", attribute="trunk", value="no"
            )

    @classmethod
    def from_element(cls, element: Element) -> Vlan:
        trunk = get_choice(element, "trunk", ("yes", "no")) == "yes"
        tags = []
        for tag in element.findall("tag"):
            tag_id = get_int(tag, "id", required=True, base=10)  # virNetDevVlanParse: base 10
            assert tag_id is not None
            with located_at(tag):
                native: NativeMode | None = get_choice(tag, "nativeMode", ("tagged", "untagged"))
                tags.append(VlanTag(tag_id, native, parsed_from=tag))
        with located_at(element):
            return cls(tuple(tags), trunk, parsed_from=element)

    def to_element(self) -> Element:
        bound = self.parsed_from
        trunk = "yes" if self.trunk else None
        if not self.trunk and bound is not None and bound.get("trunk") == "no":
            trunk = "no"  # as written; same meaning as no attribute
        children: list[Child] = [
            (
                compose(
                    "tag",
                    tag.parsed_from,
                    [("id", _written(tag.parsed_from, "id", tag.id, 10)), ("nativeMode", tag.native_mode)],
                    (),
                ),
                tag.parsed_from,
            )
            for tag in self.tags
        ]
        return compose("vlan", bound, [("trunk", trunk)], children, owns=lambda child: child.tag == "tag")


@dataclass(frozen=True)
class VirtualPort8021Qbh(Bound):
    """Cisco VN-Link port profile."""

    profileid: str

    def __post_init__(self) -> None:
        if not 0 < len(self.profileid) <= _PROFILE_ID_MAX:
            raise XmlModelError(
                "parameters",
                f"profileid must be 1..{_PROFILE_ID_MAX} characters",
                attribute="profileid",
                value=self.profileid,
            )

    def to_element(self) -> Element:
        return _virtualport_element(self.parsed_from, "802.1Qbh", [("profileid", self.profileid)])


@dataclass(frozen=True)
class VirtualPort8021Qbg(Bound):
    """VEPA/VDP association: manager id, VSI type and version, and the instance UUID."""

    managerid: int
    typeid: int
    typeidversion: int
    instanceid: str | None = None  # libvirt makes one up when absent

    def __post_init__(self) -> None:
        for name, limit in (("managerid", 0xFF), ("typeid", 0xFFFFFF), ("typeidversion", 0xFF)):
            value = getattr(self, name)
            if not 0 <= value <= limit:
                raise XmlModelError("parameters", f"must be 0..{limit}", attribute=name, value=value)
        try:
            if self.instanceid is not None:
                uuid.UUID(self.instanceid)
        except ValueError:
            raise XmlModelError(
                "parameters", "not a UUID", attribute="instanceid", value=self.instanceid
            ) from None

    def to_element(self) -> Element:
        bound = origin_of(self.parsed_from, "parameters")
        parameters: list[tuple[str, str | None]] = [
            (name, _written(bound, name, getattr(self, name), 0))
            for name in ("managerid", "typeid", "typeidversion")
        ]
        parameters.append(("instanceid", self.instanceid))
        return _virtualport_element(self.parsed_from, "802.1Qbg", parameters)


VirtualPort = VirtualPort8021Qbh | VirtualPort8021Qbg


def _virtualport_element(
    bound: Element | None, kind: str, parameters: list[tuple[str, str | None]]
) -> Element:
    origin = origin_of(bound, "parameters")
    params = compose("parameters", origin, parameters, ())
    return compose(
        "virtualport", bound, [("type", kind)], [(params, origin)], owns=lambda c: c.tag == "parameters"
    )


def _virtualport_from_element(element: Element) -> VirtualPort:
    kind = get_choice(element, "type", ("802.1Qbh", "802.1Qbg"))
    params = element.find("parameters")
    if params is None:
        params = etree.Element("parameters")
    with located_at(element):
        if kind == "802.1Qbh":
            return VirtualPort8021Qbh(required_attr(params, "profileid"), parsed_from=element)
        if kind == "802.1Qbg":
            numbers = [
                get_int(params, name, required=True) for name in ("managerid", "typeid", "typeidversion")
            ]
            managerid, typeid, typeidversion = (0 if n is None else n for n in numbers)
            return VirtualPort8021Qbg(
                managerid, typeid, typeidversion, params.get("instanceid"), parsed_from=element
            )
    raise XmlModelError(
        "virtualport", "type 802.1Qbh or 802.1Qbg is required", attribute="type", line=line_of(element)
    )


def _mac_from(element: Element) -> str | None:
    mac = element.find("mac")
    if mac is None:
        return None
    return check_mac(required_attr(mac, "address"), line=line_of(mac))


def mac_child(parent: Element | None, mac: str | None) -> list[Child]:
    if mac is None:
        return []
    origin = origin_of(parent, "mac")
    return [(compose("mac", origin, [("address", mac)], ()), origin)]


def check_teaming(element: Element) -> None:
    """``<teaming>`` is not modelled, but libvirt's parser checks it (virDomainNetTeamingInfoParseXML)."""
    teaming = element.find("teaming")
    if teaming is None:
        return
    kind, persistent = teaming.get("type"), teaming.get("persistent")
    if kind == "transient" and persistent is None:
        raise XmlModelError(
            "teaming",
            "teaming persistent attribute must be set if teaming type is 'transient'",
            attribute="persistent",
            line=line_of(teaming),
        )
    if kind == "persistent" and persistent is not None:
        raise XmlModelError(
            "teaming",
            "teaming persistent attribute not allowed if teaming type is 'persistent'",
            attribute="persistent",
            value=persistent,
            line=line_of(teaming),
        )


@dataclass(frozen=True)
class HostdevInterface(PciHostdevSource):
    """``<interface type='hostdev'>``: a VF assigned like a hostdev, with network settings applied first."""

    mac: str | None = None
    vlan: Vlan | None = None
    virtualport: VirtualPort | None = None

    TAG = "interface"
    _KIND = (("type", "hostdev"),)
    _MISSING_SOURCE = "missing <source><address type='pci'/></source>"
    _SOURCE_TYPED = True
    _OWN_CHILDREN = ("mac", "vlan", "virtualport")

    def __post_init__(self) -> None:
        if self.mac is not None:
            check_mac(self.mac)
        super().__post_init__()
        if isinstance(self.guest_address, UnassignedAddress):
            raise XmlModelError(
                "address",
                "address of type 'unassigned' is supported only for hostdevs, not <interface>",
                attribute="type",
                value="unassigned",
                line=None
                if self.guest_address.parsed_from is None
                else line_of(self.guest_address.parsed_from),
            )

    @classmethod
    def from_element(cls, element: Element) -> HostdevInterface:
        expect_tag(element, cls.TAG)
        if element.get("type") != "hostdev":
            raise XmlModelError(
                cls.TAG,
                "expected type='hostdev'",
                attribute="type",
                value=element.get("type"),
                line=line_of(element),
            )
        shared = cls.read_source_fields(element)
        check_teaming(element)
        vlan = element.find("vlan")
        port = element.find("virtualport")
        return cls(
            **shared,
            mac=_mac_from(element),
            vlan=None if vlan is None else Vlan.from_element(vlan),
            virtualport=None if port is None else _virtualport_from_element(port),
            parsed_from=element,
        )

    def to_element(self) -> Element:
        own = [
            (part.to_element(), part.parsed_from)
            for part in (self.vlan, self.virtualport)
            if part is not None
        ]
        return self.compose_source(mac_child(self.parsed_from, self.mac), own)


@dataclass(frozen=True)
class NetworkInterface(XmlModel):
    """``<interface type='network'><source network='passthrough'/>``: a VF taken from a hostdev pool."""

    network: str
    mac: str | None = None

    def __post_init__(self) -> None:
        if not self.network:
            raise XmlModelError("source", "network name is empty", attribute="network", value=self.network)
        if self.mac is not None:
            check_mac(self.mac)

    @classmethod
    def from_element(cls, element: Element) -> NetworkInterface:
        expect_tag(element, "interface")
        source = element.find("source")
        if element.get("type") != "network" or source is None:
            raise XmlModelError(
                "interface",
                "expected type='network' with <source network=...>",
                attribute="type",
                value=element.get("type"),
                line=line_of(element),
            )
        check_teaming(element)
        return cls(network=required_attr(source, "network"), mac=_mac_from(element), parsed_from=element)

    def to_element(self) -> Element:
        bound = self.parsed_from
        origin = origin_of(bound, "source")
        children = mac_child(bound, self.mac)
        children.append((compose("source", origin, [("network", self.network)], ()), origin))
        return compose(
            "interface",
            bound,
            [("type", "network")],
            children,
            owns=lambda child: child.tag in ("mac", "source"),
        )
