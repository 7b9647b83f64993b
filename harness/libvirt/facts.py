"""What libvirt says about a host: versions, hostdev support in domain capabilities, node devices."""

from __future__ import annotations

import libvirt
from lxml import etree

from harness.host.libvirt_facts import LibvirtFacts, NodeDeviceView
from harness.libvirt.connection import version_text
from harness.xml.nodedev import NodeDevice


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
