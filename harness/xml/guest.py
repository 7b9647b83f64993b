"""A ``<domain>`` that runs: machine type, direct kernel boot, a serial log, PCI controllers, emulated NICs.

:class:`Domain` carries what assignment needs (hostdevs, interfaces); :class:`GuestMachine` wraps one and
adds what a guest with an OS (the hotplug suite's answering guest) or a topology check needs. Parsing
keeps only what these classes model; everything else in libvirt's answer is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lxml import etree

from harness.xml.address import PciAddress
from harness.xml.base import Element, XmlModel, expect_tag, get_int, line_of, located_at, required_attr
from harness.xml.domain import Domain
from harness.xml.errors import XmlModelError

__all__ = [
    "EmulatedNic",
    "GuestMachine",
    "KernelBoot",
    "MachineType",
    "PciController",
    "SerialLog",
    "q35_root_ports",
]

MachineType = Literal["q35", "pc"]
MACHINE_TYPES: tuple[MachineType, ...] = ("q35", "pc")
# Controller models that give a guest PCI slots (libvirt's names).
PCI_CONTROLLER_MODELS = (
    "pci-root",
    "pcie-root",
    "pci-bridge",
    "pcie-root-port",
    "pcie-to-pci-bridge",
    "dmi-to-pci-bridge",
    "pcie-switch-upstream-port",
    "pcie-switch-downstream-port",
    "pci-expander-bus",
    "pcie-expander-bus",
)


@dataclass(frozen=True)
class KernelBoot:
    """``<os><kernel/><initrd/><cmdline/></os>``: boot a kernel file directly, no disk."""

    kernel: str
    initrd: str | None = None
    cmdline: str = ""

    def __post_init__(self) -> None:
        for name, value in (("kernel", self.kernel), ("initrd", self.initrd)):
            if value is not None and not value.startswith("/"):
                raise XmlModelError(name, "must be an absolute path", value=value)


@dataclass(frozen=True)
class SerialLog:
    """``<serial type='file'>``: the guest's first serial port written to a file on the host."""

    path: str

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise XmlModelError("serial", "must be an absolute path", attribute="path", value=self.path)

    def to_element(self) -> Element:
        element = etree.Element("serial", type="file")
        etree.SubElement(element, "source", path=self.path)
        etree.SubElement(element, "target", port="0")
        return element


@dataclass(frozen=True)
class PciController(XmlModel):
    """``<controller type='pci' index= model=>``; ``address`` is where the controller itself sits."""

    index: int
    model: str
    address: PciAddress | None = None

    def __post_init__(self) -> None:
        if self.model not in PCI_CONTROLLER_MODELS:
            expected = f"expected one of {', '.join(PCI_CONTROLLER_MODELS)}"
            raise XmlModelError("controller", expected, attribute="model", value=self.model)
        if not 0 <= self.index <= 255:
            raise XmlModelError("controller", "index must be 0..255", attribute="index", value=self.index)

    @classmethod
    def from_element(cls, element: Element) -> PciController:
        expect_tag(element, "controller")
        if element.get("type") != "pci":
            raise XmlModelError("controller", "only type='pci' is modelled", line=line_of(element))
        address = element.find("address")
        with located_at(element):
            return cls(
                index=get_int(element, "index", required=True) or 0,
                model=required_attr(element, "model"),
                address=None if address is None else PciAddress.from_element(address),
            )

    def to_element(self) -> Element:
        element = etree.Element("controller", type="pci", index=str(self.index), model=self.model)
        if self.address is not None:
            element.append(self.address.to_element())
        return element


def q35_root_ports(count: int) -> tuple[PciController, ...]:
    """pcie-root and ``count`` pcie-root-ports: the empty ones are a q35 guest's hotplug slots."""
    return (PciController(0, "pcie-root"), *(PciController(i, "pcie-root-port") for i in range(1, count + 1)))


@dataclass(frozen=True)
class EmulatedNic(XmlModel):
    """``<interface type='user'>`` with an emulated model: a cheap PCI device for topology checks."""

    model: str = "e1000"
    guest_address: PciAddress | None = None

    @classmethod
    def from_element(cls, element: Element) -> EmulatedNic:
        expect_tag(element, "interface")
        model = element.find("model")
        address = element.find("address")
        return cls(
            model=model.get("type", "") if model is not None else "",
            guest_address=None if address is None else PciAddress.from_element(address),
        )

    def to_element(self) -> Element:
        element = etree.Element("interface", type="user")
        etree.SubElement(element, "model", type=self.model)
        if self.guest_address is not None:
            element.append(self.guest_address.to_element())
        return element


@dataclass(frozen=True)
class GuestMachine(XmlModel):
    """A :class:`Domain` with a machine type and the few devices a running guest needs.

    ``minimal`` turns off what libvirt adds by default and nothing here uses (USB controller, balloon,
    so every PCI slot is accounted for and the guest boots faster under TCG).
    """

    domain: Domain
    machine: MachineType = "q35"
    boot: KernelBoot | None = None
    serial: SerialLog | None = None
    controllers: tuple[PciController, ...] = ()
    nics: tuple[EmulatedNic, ...] = ()
    minimal: bool = True

    @property
    def name(self) -> str:
        return self.domain.name

    @classmethod
    def from_element(cls, element: Element) -> GuestMachine:
        domain = Domain.from_element(element)
        os_type = element.find("os/type")
        machine_attr = "" if os_type is None else os_type.get("machine", "")
        # libvirt expands the alias: pc-q35-7.2, pc-i440fx-7.2.
        machine: MachineType = "q35" if "q35" in machine_attr else "pc"
        kernel = element.findtext("os/kernel")
        serial = element.find("devices/serial[@type='file']/source")
        return cls(
            domain=domain,
            machine=machine,
            boot=None
            if kernel is None
            else KernelBoot(kernel, element.findtext("os/initrd"), element.findtext("os/cmdline") or ""),
            serial=None if serial is None else SerialLog(required_attr(serial, "path")),
            controllers=tuple(
                PciController.from_element(c) for c in element.iterfind("devices/controller[@type='pci']")
            ),
            nics=tuple(
                EmulatedNic.from_element(n) for n in element.iterfind("devices/interface[@type='user']")
            ),
            minimal=element.find("devices/memballoon[@model='none']") is not None,
        )

    def to_element(self) -> Element:
        element = self.domain.to_element()
        os_element = element.find("os")
        os_type = element.find("os/type")
        assert os_element is not None and os_type is not None  # Domain.to_element always writes them
        os_type.set("machine", self.machine)
        if self.boot is not None:
            etree.SubElement(os_element, "kernel").text = self.boot.kernel
            if self.boot.initrd is not None:
                etree.SubElement(os_element, "initrd").text = self.boot.initrd
            etree.SubElement(os_element, "cmdline").text = self.boot.cmdline
        # ACPI carries hotplug on both machines (acpiphp); without it libvirt passes -no-acpi.
        features = etree.Element("features")
        etree.SubElement(features, "acpi")
        os_element.addnext(features)
        devices = element.find("devices")
        assert devices is not None
        for controller in self.controllers:
            devices.append(controller.to_element())
        for nic in self.nics:
            devices.append(nic.to_element())
        if self.serial is not None:
            devices.append(self.serial.to_element())
        if self.minimal:
            etree.SubElement(devices, "controller", type="usb", model="none")
            etree.SubElement(devices, "memballoon", model="none")
        return element
