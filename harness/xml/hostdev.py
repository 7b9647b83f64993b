"""``<hostdev mode='subsystem' type='pci'>``: a whole PCI function handed to the guest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.xml.address import GuestAddress, PciAddress, guest_address_from_element
from harness.xml.base import (
    Bound,
    Child,
    Element,
    XmlModel,
    compose,
    expect_tag,
    get_choice,
    get_int,
    get_yes_no,
    int_as_written,
    line_of,
    origin_of,
    reject_children,
    yes_no,
)
from harness.xml.errors import XmlModelError

__all__ = [
    "HOSTDEV_DRIVERS",
    "HostdevDriver",
    "PciHostdev",
    "Rom",
    "check_hostdev_driver",
    "driver_child",
    "source_child",
]

# virDomainHostdevSubsysPCIBackendType: what libvirt's parser takes for <driver name=>.
HostdevDriver = Literal["vfio", "kvm", "xen", "default"]
HOSTDEV_DRIVERS: tuple[HostdevDriver, ...] = ("vfio", "kvm", "xen", "default")

# The RHEL guide (9.1.7): these belong to <interface type='hostdev'>, never to <hostdev>.
_INTERFACE_ONLY_CHILDREN = {
    tag: f"<{tag}> is not valid inside <hostdev>; use <interface type='hostdev'> to set it"
    for tag in ("mac", "vlan", "virtualport")
}
# Children of <hostdev> the model reads; anything else (alias, acpi, teaming, ...) is kept as written.
_HOSTDEV_CHILDREN = ("driver", "source", "boot", "rom", "address")


def _on_off(value: bool | None) -> str | None:
    return None if value is None else "on" if value else "off"


@dataclass(frozen=True)
class Rom(Bound):
    """``<rom bar='on|off' file='/path' enabled='yes|no'/>``: the option ROM the guest sees.

    A relative ``file`` is libvirt's parser's business no more than ours: it takes it (QEMU may not).
    """

    bar: bool | None = None
    file: str | None = None
    enabled: bool | None = None

    def __post_init__(self) -> None:
        if self.enabled is False and (self.bar is not None or self.file is not None):
            # virDomainDeviceInfoParseXML: "ROM tuning is not supported when ROM is disabled"
            raise XmlModelError(
                "rom",
                "ROM tuning (bar=, file=) is not supported when the ROM is disabled",
                attribute="enabled",
                value="no",
            )

    @classmethod
    def from_element(cls, element: Element) -> Rom:
        bar = get_choice(element, "bar", ("on", "off"))
        try:
            return cls(
                bar=None if bar is None else bar == "on",
                file=element.get("file"),
                enabled=get_yes_no(element, "enabled"),
                parsed_from=element,
            )
        except XmlModelError as error:
            error.line = line_of(element)
            raise

    def to_element(self) -> Element:
        attributes = [("bar", _on_off(self.bar)), ("file", self.file), ("enabled", yes_no(self.enabled))]
        return compose("rom", self.parsed_from, attributes, ())


def check_hostdev_driver(driver: str | None) -> None:
    """``<driver name=...>`` of a hostdev or a hostdev interface."""
    if driver is not None and driver not in HOSTDEV_DRIVERS:
        raise XmlModelError(
            "driver", f"expected one of {', '.join(HOSTDEV_DRIVERS)}", attribute="name", value=driver
        )


def driver_child(parent: Element | None, driver: str | None) -> list[Child]:
    """``<driver name=>`` written over the parsed one: its other attributes and children stay.

    A parsed ``<driver>`` without ``name=`` (``model='vfio-pci-igb'``, ``queues='4'``) is kept as it
    was; it goes only when the model drops the name it had and nothing else is left on it.
    """
    origin = origin_of(parent, "driver")
    if origin is None:
        return [] if driver is None else [(compose("driver", None, [("name", driver)], ()), None)]
    built = compose("driver", origin, [("name", driver)], ())
    emptied = driver is None and origin.get("name") is not None
    if emptied and not built.attrib and len(built) == 0 and not (built.text or "").strip():
        return []
    return [(built, origin)]


def source_child(parent: Element | None, source: PciAddress, *, with_type: bool) -> Child:
    """``<source><address .../></source>`` written over the parsed one."""
    origin = origin_of(parent, "source")
    address = (source.to_element(with_type=with_type), source.parsed_from)
    return compose("source", origin, (), [address], owns=lambda child: child.tag == "address"), origin


def guest_address_child(address: GuestAddress | None) -> list[Child]:
    return [] if address is None else [(address.to_element(), address.parsed_from)]


@dataclass(frozen=True)
class PciHostdev(XmlModel):
    """A PCI host device; ``managed=None`` means the attribute is absent (libvirt reads it as 'no')."""

    source: PciAddress
    managed: bool | None = None
    driver: HostdevDriver | None = None
    guest_address: GuestAddress | None = None
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
            guest_address=None if guest is None else guest_address_from_element(guest),
            rom=None if rom is None else Rom.from_element(rom),
            # virDomainDeviceBootParseXML reads the order in base 10: '010' is ten, '0x5' is refused
            boot_order=None if boot is None else get_int(boot, "order", required=True, base=10),
            parsed_from=element,
        )

    def to_element(self) -> Element:
        bound = self.parsed_from
        children: list[Child] = driver_child(bound, self.driver)
        children.append(source_child(bound, self.source, with_type=False))
        if self.boot_order is not None:
            origin = origin_of(bound, "boot")
            order = int_as_written(None if origin is None else origin.get("order"), self.boot_order, 10)
            children.append((compose("boot", origin, [("order", order)], ()), origin))
        if self.rom is not None:
            children.append((self.rom.to_element(), self.rom.parsed_from))
        children += guest_address_child(self.guest_address)
        return compose(
            "hostdev",
            bound,
            [("mode", "subsystem"), ("type", "pci"), ("managed", yes_no(self.managed))],
            children,
            owns=lambda child: child.tag in _HOSTDEV_CHILDREN,
        )
