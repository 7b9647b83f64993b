"""``<interface type='hostdev'>`` (an SR-IOV VF with MAC, VLAN and virtualport) and ``type='network'``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from harness.xml.address import PciAddress
from harness.xml.base import (
    Element,
    XmlModel,
    expect_tag,
    get_choice,
    get_int,
    get_yes_no,
    line_of,
    required_attr,
    set_attr,
    set_yes_no,
)
from harness.xml.errors import XmlModelError
from harness.xml.hostdev import HOSTDEV_DRIVERS, HostdevDriver, check_hostdev_driver

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
]

NativeMode = Literal["tagged", "untagged"]
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_PROFILE_ID_MAX = 39  # IFLA_PORT_PROFILE is 40 bytes with the NUL


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
class VlanTag:
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
class Vlan:
    """``<vlan trunk='yes'><tag id=.. nativeMode=../></vlan>``; ``trunk`` False means no attribute."""

    tags: tuple[VlanTag, ...]
    trunk: bool = False

    def __post_init__(self) -> None:
        if not self.tags:
            raise XmlModelError("vlan", "needs at least one <tag>", attribute="<tag>")
        natives = [tag for tag in self.tags if tag.native_mode is not None]
        if len(natives) > 1:
            raise XmlModelError(
                "vlan",
                "only one tag may set nativeMode",
                attribute="nativeMode",
                value=natives[1].native_mode,
            )
        if natives and not self.trunk:
            raise XmlModelError("vlan", "nativeMode needs trunk='yes'", attribute="trunk")
        if len(self.tags) > 1 and not self.trunk:
            raise XmlModelError("vlan", "several tags need trunk='yes'", attribute="trunk")

    @classmethod
    def from_element(cls, element: Element) -> Vlan:
        trunk = get_choice(element, "trunk", ("yes", "no")) == "yes"
        tags = []
        for tag in element.findall("tag"):
            tag_id = get_int(tag, "id", required=True)
            assert tag_id is not None
            try:
                tags.append(VlanTag(tag_id, get_choice(tag, "nativeMode", ("tagged", "untagged"))))
            except XmlModelError as error:
                error.line = line_of(tag)
                raise
        try:
            return cls(tuple(tags), trunk)
        except XmlModelError as error:
            error.line = line_of(element)
            raise

    def to_element(self) -> Element:
        element = etree.Element("vlan")
        if self.trunk:
            element.set("trunk", "yes")
        for tag in self.tags:
            child = etree.SubElement(element, "tag", id=str(tag.id))
            set_attr(child, "nativeMode", tag.native_mode)
        return element


@dataclass(frozen=True)
class VirtualPort8021Qbh:
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
        element = etree.Element("virtualport", type="802.1Qbh")
        etree.SubElement(element, "parameters", profileid=self.profileid)
        return element


@dataclass(frozen=True)
class VirtualPort8021Qbg:
    """VEPA/VDP association: manager id, VSI type and version, and the instance UUID."""

    managerid: int
    typeid: int
    typeidversion: int
    instanceid: str

    def __post_init__(self) -> None:
        for name, limit in (("managerid", 0xFF), ("typeid", 0xFFFFFF), ("typeidversion", 0xFF)):
            value = getattr(self, name)
            if not 0 <= value <= limit:
                raise XmlModelError("parameters", f"must be 0..{limit}", attribute=name, value=value)
        try:
            uuid.UUID(self.instanceid)
        except ValueError:
            raise XmlModelError(
                "parameters", "not a UUID", attribute="instanceid", value=self.instanceid
            ) from None

    def to_element(self) -> Element:
        element = etree.Element("virtualport", type="802.1Qbg")
        etree.SubElement(
            element,
            "parameters",
            managerid=str(self.managerid),
            typeid=str(self.typeid),
            typeidversion=str(self.typeidversion),
            instanceid=self.instanceid,
        )
        return element


VirtualPort = VirtualPort8021Qbh | VirtualPort8021Qbg


def _virtualport_from_element(element: Element) -> VirtualPort:
    kind = get_choice(element, "type", ("802.1Qbh", "802.1Qbg"))
    params = element.find("parameters")
    if params is None:
        params = etree.Element("parameters")
    try:
        if kind == "802.1Qbh":
            return VirtualPort8021Qbh(required_attr(params, "profileid"))
        if kind == "802.1Qbg":
            numbers = [
                get_int(params, name, required=True) for name in ("managerid", "typeid", "typeidversion")
            ]
            managerid, typeid, typeidversion = (0 if n is None else n for n in numbers)
            return VirtualPort8021Qbg(managerid, typeid, typeidversion, required_attr(params, "instanceid"))
    except XmlModelError as error:
        error.line = error.line or line_of(element)
        raise
    raise XmlModelError(
        "virtualport", "type 802.1Qbh or 802.1Qbg is required", attribute="type", line=line_of(element)
    )


def _mac_from(element: Element) -> str | None:
    mac = element.find("mac")
    if mac is None:
        return None
    return check_mac(required_attr(mac, "address"), line=line_of(mac))


@dataclass(frozen=True)
class HostdevInterface(XmlModel):
    """``<interface type='hostdev'>``: a VF assigned like a hostdev, with network settings applied first."""

    source: PciAddress
    mac: str | None = None
    managed: bool | None = None
    driver: HostdevDriver | None = None
    vlan: Vlan | None = None
    virtualport: VirtualPort | None = None
    guest_address: PciAddress | None = None

    def __post_init__(self) -> None:
        if self.mac is not None:
            check_mac(self.mac)
        check_hostdev_driver(self.driver)

    @classmethod
    def from_element(cls, element: Element) -> HostdevInterface:
        expect_tag(element, "interface")
        if element.get("type") != "hostdev":
            raise XmlModelError(
                "interface",
                "expected type='hostdev'",
                attribute="type",
                value=element.get("type"),
                line=line_of(element),
            )
        address = element.find("source/address")
        if address is None:
            raise XmlModelError(
                "interface", "missing <source><address type='pci'/></source>", line=line_of(element)
            )
        driver = element.find("driver")
        vlan = element.find("vlan")
        port = element.find("virtualport")
        guest = element.find("address")
        return cls(
            source=PciAddress.from_element(address),
            mac=_mac_from(element),
            managed=get_yes_no(element, "managed"),
            driver=None if driver is None else get_choice(driver, "name", HOSTDEV_DRIVERS),
            vlan=None if vlan is None else Vlan.from_element(vlan),
            virtualport=None if port is None else _virtualport_from_element(port),
            guest_address=None if guest is None else PciAddress.from_element(guest),
        )

    def to_element(self) -> Element:
        element = etree.Element("interface", type="hostdev")
        set_yes_no(element, "managed", self.managed)
        if self.mac is not None:
            etree.SubElement(element, "mac", address=self.mac)
        if self.driver is not None:
            etree.SubElement(element, "driver", name=self.driver)
        source = etree.SubElement(element, "source")
        source.append(self.source.to_element(with_type=True))
        if self.vlan is not None:
            element.append(self.vlan.to_element())
        if self.virtualport is not None:
            element.append(self.virtualport.to_element())
        if self.guest_address is not None:
            element.append(self.guest_address.to_element())
        return element


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
        return cls(network=required_attr(source, "network"), mac=_mac_from(element))

    def to_element(self) -> Element:
        element = etree.Element("interface", type="network")
        if self.mac is not None:
            etree.SubElement(element, "mac", address=self.mac)
        etree.SubElement(element, "source", network=self.network)
        return element
