"""``<hostdev mode='subsystem' type='pci'>``: a whole PCI function handed to the guest."""

from __future__ import annotations

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
    reject_children,
    set_attr,
    set_yes_no,
)
from harness.xml.errors import XmlModelError

__all__ = ["HOSTDEV_DRIVERS", "HostdevDriver", "PciHostdev", "Rom", "check_hostdev_driver"]

HostdevDriver = Literal["vfio", "kvm"]
HOSTDEV_DRIVERS: tuple[HostdevDriver, ...] = ("vfio", "kvm")

# The RHEL guide (9.1.7): these belong to <interface type='hostdev'>, never to <hostdev>.
_INTERFACE_ONLY_CHILDREN = {
    tag: f"<{tag}> is not valid inside <hostdev>; use <interface type='hostdev'> to set it"
    for tag in ("mac", "vlan", "virtualport")
}


@dataclass(frozen=True)
class Rom:
    """``<rom bar='on|off' file='/path'/>``: the option ROM the guest sees."""

    bar: bool | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if self.file is not None and not self.file.startswith("/"):
            raise XmlModelError("rom", "must be an absolute path", attribute="file", value=self.file)

    @classmethod
    def from_element(cls, element: Element) -> Rom:
        bar = get_choice(element, "bar", ("on", "off"))
        try:
            return cls(bar=None if bar is None else bar == "on", file=element.get("file"))
        except XmlModelError as error:
            error.line = line_of(element)
            raise

    def to_element(self) -> Element:
        element = etree.Element("rom")
        if self.bar is not None:
            element.set("bar", "on" if self.bar else "off")
        set_attr(element, "file", self.file)
        return element


def check_hostdev_driver(driver: str | None) -> None:
    """``<driver name=...>`` of a hostdev or a hostdev interface."""
    if driver is not None and driver not in HOSTDEV_DRIVERS:
        raise XmlModelError("driver", "expected vfio or kvm", attribute="name", value=driver)


@dataclass(frozen=True)
class PciHostdev(XmlModel):
    """A PCI host device; ``managed=None`` means the attribute is absent (libvirt reads it as 'no')."""

    source: PciAddress
    managed: bool | None = None
    driver: HostdevDriver | None = None
    guest_address: PciAddress | None = None
    rom: Rom | None = None
    boot_order: int | None = None

    def __post_init__(self) -> None:
        check_hostdev_driver(self.driver)
        if self.boot_order is not None and self.boot_order < 1:
            raise XmlModelError("boot", "must be 1 or more", attribute="order", value=self.boot_order)

    @classmethod
    def from_element(cls, element: Element) -> PciHostdev:
        expect_tag(element, "hostdev")
        for name, wanted in (("mode", "subsystem"), ("type", "pci")):
            if element.get(name) != wanted:
                raise XmlModelError(
                    "hostdev",
                    f"only {name}='{wanted}' is modelled",
                    attribute=name,
                    value=element.get(name),
                    line=line_of(element),
                )
        reject_children(element, _INTERFACE_ONLY_CHILDREN)
        address = element.find("source/address")
        if address is None:
            raise XmlModelError("hostdev", "missing <source><address/></source>", line=line_of(element))
        driver = element.find("driver")
        guest = element.find("address")
        rom = element.find("rom")
        boot = element.find("boot")
        return cls(
            source=PciAddress.from_element(address),
            managed=get_yes_no(element, "managed"),
            driver=None if driver is None else get_choice(driver, "name", HOSTDEV_DRIVERS),
            guest_address=None if guest is None else PciAddress.from_element(guest),
            rom=None if rom is None else Rom.from_element(rom),
            boot_order=None if boot is None else get_int(boot, "order", required=True),
        )

    def to_element(self) -> Element:
        element = etree.Element("hostdev", mode="subsystem", type="pci")
        set_yes_no(element, "managed", self.managed)
        if self.driver is not None:
            etree.SubElement(element, "driver", name=self.driver)
        source = etree.SubElement(element, "source")
        source.append(self.source.to_element(with_type=False))
        if self.boot_order is not None:
            etree.SubElement(element, "boot", order=str(self.boot_order))
        if self.rom is not None:
            element.append(self.rom.to_element())
        if self.guest_address is not None:
            element.append(self.guest_address.to_element())
        return element
