"""What libvirt says about a host: versions, hostdev support in domain capabilities, node devices."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import libvirt
from lxml import etree

from harness.libvirt.connection import version_text
from harness.xml.nodedev import NodeDevice


@dataclass(frozen=True)
class NodeDeviceView:
    """libvirt's view of one PCI node device, to compare with sysfs."""

    name: str
    driver: str | None
    iommu_group: int | None
    iommu_group_members: tuple[str, ...] = ()


@dataclass
class LibvirtFacts:
    uri: str
    reachable: bool
    error: str | None = None
    library_version: str | None = None
    hypervisor_version: str | None = None
    virt_type: str | None = None
    hostdev_supported: bool = False
    pci_backends: list[str] = field(default_factory=list)
    subsys_types: list[str] = field(default_factory=list)
    node_devices: dict[str, NodeDeviceView] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LibvirtFacts:
        data: dict[str, Any] = json.loads(text)
        views = {
            name: NodeDeviceView(
                view["name"], view["driver"], view["iommu_group"], tuple(view["iommu_group_members"])
            )
            for name, view in data.pop("node_devices", {}).items()
        }
        return cls(**data, node_devices=views)

    @classmethod
    def unreachable(cls, uri: str, error: str) -> LibvirtFacts:
        return cls(uri=uri, reachable=False, error=error)


def _values(caps: etree._Element, enum: str) -> list[str]:
    return [value.text or "" for value in caps.findall(f"devices/hostdev/enum[@name='{enum}']/value")]


def read_node_device(xml_text: str) -> NodeDeviceView:
    """The parts of ``nodedev-dumpxml`` the inventory compares with sysfs, read through the XML model."""
    device = NodeDevice.parse(xml_text)
    group = device.capability.iommu_group
    return NodeDeviceView(
        name=device.name,
        driver=device.driver,
        iommu_group=group.number if group is not None else None,
        iommu_group_members=tuple(a.nodedev_name for a in group.addresses) if group is not None else (),
    )


def _virt_type(connection: libvirt.virConnect) -> str:
    """kvm when the capabilities offer it; the KVM check itself decides whether it really works."""
    capabilities = etree.fromstring(connection.getCapabilities().encode())
    types = {domain.get("type") for domain in capabilities.findall("guest/arch[@name='x86_64']/domain")}
    return "kvm" if "kvm" in types else "qemu"


def gather_libvirt_facts(connection: libvirt.virConnect) -> LibvirtFacts:
    uri = connection.getURI()
    facts = LibvirtFacts(
        uri=uri,
        reachable=True,
        library_version=version_text(connection.getLibVersion()),
        hypervisor_version=version_text(connection.getVersion()),
    )
    try:
        facts.virt_type = _virt_type(connection)
        caps = etree.fromstring(
            connection.getDomainCapabilities(None, "x86_64", None, facts.virt_type).encode()
        )
        hostdev = caps.find("devices/hostdev")
        facts.hostdev_supported = hostdev is not None and hostdev.get("supported") == "yes"
        facts.pci_backends = _values(caps, "pciBackend")
        facts.subsys_types = _values(caps, "subsysType")
    except libvirt.libvirtError as exc:
        facts.error = f"domain capabilities: {exc.get_error_message()}"
    try:
        for device in connection.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
            view = read_node_device(device.XMLDesc(0))
            facts.node_devices[view.name] = view
    except libvirt.libvirtError as exc:
        facts.error = f"node devices: {exc.get_error_message()}"
    return facts
