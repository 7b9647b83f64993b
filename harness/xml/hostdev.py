"""``<hostdev mode='subsystem' type='pci'>``: a whole PCI function handed to the guest.

:class:`PciHostdevSource` is the part it shares with ``<interface type='hostdev'>`` (harness/xml/interface.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict

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
    located_at,
    origin_of,
    reject_children,
    yes_no,
)
from harness.xml.errors import XmlModelError

__all__ = [
    "HOSTDEV_DRIVERS",
    "HostdevDriver",
    "PciHostdev",
    "PciHostdevSource",
    "Rom",
    "check_hostdev_driver",
]

# virDomainHostdevSubsysPCIBackendType: what libvirt's parser takes for <driver name=>.
HostdevDriver = Literal["vfio", "kvm", "xen", "default"]
HOSTDEV_DRIVERS: tuple[HostdevDriver, ...] = ("vfio", "kvm", "xen", "default")

# The RHEL guide (9.1.7): these belong to <interface type='hostdev'>, never to <hostdev>.
_INTERFACE_ONLY_CHILDREN = {
    tag: f"<{tag}> is not valid inside <hostdev>; use <interface type='hostdev'> to set it"
    for tag in ("mac", "vlan", "virtualport")
}


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
        with located_at(element):
            return cls(
                bar=None if bar is None else bar == "on",
                file=element.get("file"),
                enabled=get_yes_no(element, "enabled"),
                parsed_from=element,
            )

    def to_element(self) -> Element:
        attributes = [("bar", _on_off(self.bar)), ("file", self.file), ("enabled", yes_no(self.enabled))]
        return compose("rom", self.parsed_from, attributes, ())


def check_hostdev_driver(driver: str | None) -> None:
    """``<driver name=...>`` of a hostdev or a hostdev interface."""
    if driver is not None and driver not in HOSTDEV_DRIVERS:
        raise XmlModelError(
            "driver", f"expected one of {', '.join(HOSTDEV_DRIVERS)}", attribute="name", value=driver
        )


def _driver_child(parent: Element | None, driver: str | None) -> list[Child]:
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


def _source_child(parent: Element | None, source: PciAddress, *, with_type: bool) -> Child:
    """``<source><address .../></source>`` written over the parsed one."""
    origin = origin_of(parent, "source")
    address = (source.to_element(with_type=with_type), source.parsed_from)
    return compose("source", origin, (), [address], owns=lambda child: child.tag == "address"), origin


class _SourceFields(TypedDict):
    """What :meth:`PciHostdevSource.read_source_fields` reads, to pass on to the class."""

    source: PciAddress
    managed: bool | None
    driver: HostdevDriver | None
    guest_address: GuestAddress | None


# Children of a PCI hostdev source the shared part reads; each kind adds its own (``_OWN_CHILDREN``).
# Anything else (alias, acpi, boot of an interface, model, teaming, ...) is kept as written.
_SOURCE_CHILDREN = ("driver", "source", "address")


@dataclass(frozen=True)
class PciHostdevSource(XmlModel):
    """The part ``<hostdev type='pci'>`` and ``<interface type='hostdev'>`` share: a host PCI function.

    ``managed=None`` means the attribute is absent (libvirt reads it as 'no'). A kind says how its
    element is spelled (the class variables) and reads and writes its own children around these.
    """

    source: PciAddress
    managed: bool | None = None
    driver: HostdevDriver | None = None
    guest_address: GuestAddress | None = None

    TAG: ClassVar[str]  # the element: hostdev or interface
    _KIND: ClassVar[tuple[tuple[str, str], ...]]  # attributes that say which kind of <TAG> it is
    _MISSING_SOURCE: ClassVar[str]  # the problem when <source><address/> is absent
    _SOURCE_TYPED: ClassVar[bool]  # <source><address type='pci'> written with its type
    _OWN_CHILDREN: ClassVar[tuple[str, ...]]  # the kind's own children the model reads

    def __post_init__(self) -> None:
        check_hostdev_driver(self.driver)

    @classmethod
    def read_source_fields(cls, element: Element) -> _SourceFields:
        """The shared fields of a parsed element (after its kind was checked)."""
        address = element.find("source/address")
        if address is None:
            raise XmlModelError(cls.TAG, cls._MISSING_SOURCE, line=line_of(element))
        driver = element.find("driver")
        guest = element.find("address")
        return _SourceFields(
            source=PciAddress.from_element(address),
            managed=get_yes_no(element, "managed"),
            driver=None if driver is None else get_choice(driver, "name", HOSTDEV_DRIVERS),
            guest_address=None if guest is None else guest_address_from_element(guest),
        )

    def compose_source(self, before_driver: list[Child], after_source: list[Child]) -> Element:
        """The element written over the parsed one: the kind's children go around the shared ones."""
        bound = self.parsed_from
        children = before_driver + _driver_child(bound, self.driver)
        children.append(_source_child(bound, self.source, with_type=self._SOURCE_TYPED))
        children += after_source
        if self.guest_address is not None:
            children.append((self.guest_address.to_element(), self.guest_address.parsed_from))
        owned = _SOURCE_CHILDREN + self._OWN_CHILDREN
        return compose(
            self.TAG,
            bound,
            [*self._KIND, ("managed", yes_no(self.managed))],
            children,
            owns=lambda child: child.tag in owned,
        )


@dataclass(frozen=True)
class PciHostdev(PciHostdevSource):
    """``<hostdev mode='subsystem' type='pci'>``: a PCI host device, with its option ROM and boot order."""

    rom: Rom | None = None
    boot_order: int | None = None

    TAG = "hostdev"
    _KIND = (("mode", "subsystem"), ("type", "pci"))
    _MISSING_SOURCE = "missing <source><address/></source>"
    _SOURCE_TYPED = False
    _OWN_CHILDREN = ("boot", "rom")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.boot_order is not None and self.boot_order < 1:
            raise XmlModelError("boot", "must be 1 or more", attribute="order", value=self.boot_order)

    @classmethod
    def from_element(cls, element: Element) -> PciHostdev:
        expect_tag(element, cls.TAG)
        for name, wanted in cls._KIND:
            if element.get(name) != wanted:
                raise XmlModelError(
                    cls.TAG,
                    f"only {name}='{wanted}' is modelled",
                    attribute=name,
                    value=element.get(name),
                    line=line_of(element),
                )
        reject_children(element, _INTERFACE_ONLY_CHILDREN)
        shared = cls.read_source_fields(element)
        rom = element.find("rom")
        boot = element.find("boot")
        return cls(
            **shared,
            rom=None if rom is None else Rom.from_element(rom),
            # virDomainDeviceBootParseXML reads the order in base 10: '010' is ten, '0x5' is refused
            boot_order=None if boot is None else get_int(boot, "order", required=True, base=10),
            parsed_from=element,
        )

    def to_element(self) -> Element:
        own: list[Child] = []
        if self.boot_order is not None:
            origin = origin_of(self.parsed_from, "boot")
            order = int_as_written(None if origin is None else origin.get("order"), self.boot_order, 10)
            own.append((compose("boot", origin, [("order", order)], ()), origin))
        if self.rom is not None:
            own.append((self.rom.to_element(), self.rom.parsed_from))
        return self.compose_source([], own)
