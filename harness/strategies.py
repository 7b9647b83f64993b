"""Hypothesis strategies for the XML models; every value they draw is valid by construction.

Flat module in the style of ``hypothesis.strategies``: one public function per model, listed in
``__all__``. Composite strategies keep related parts consistent: a VF names its PF and the PF lists
it, an IOMMU group contains the device it belongs to, a network's VF list has no duplicates.
"""

from __future__ import annotations

import dataclasses
from xml.sax.saxutils import escape, quoteattr

from hypothesis import strategies as st
from lxml import etree

from harness.xml.address import ARI_FUNCTION_LIMIT, PCI_LIMITS, Notation, PciAddress, UnassignedAddress
from harness.xml.domain import Device, Domain
from harness.xml.hostdev import PciHostdev, Rom
from harness.xml.interface import (
    HostdevInterface,
    NetworkInterface,
    VirtualPort,
    VirtualPort8021Qbg,
    VirtualPort8021Qbh,
    Vlan,
    VlanTag,
)
from harness.xml.network import Forward, Network
from harness.xml.nodedev import (
    IommuGroup,
    NodeDevice,
    NonPciNodeDevice,
    PciCapability,
    PciId,
    VirtFunctions,
)

__all__ = [
    "NODEDEV_DECIMAL_FORMATS",
    "NODEDEV_HEX_FORMATS",
    "XML_SPECIAL_CHARACTERS",
    "ari_pci_addresses",
    "device_lists",
    "domain_names",
    "domains",
    "driver_attributes",
    "forwards",
    "guest_pci_addresses",
    "hostdev_forwards",
    "hostdev_interfaces",
    "hostdevs_with_driver_attributes",
    "iommu_groups",
    "mac_addresses",
    "network_interfaces",
    "network_names",
    "networks",
    "node_devices",
    "non_pci_node_devices",
    "pci_addresses",
    "pci_capabilities",
    "pci_hostdevs",
    "pci_id_texts",
    "pci_ids",
    "pf_with_vfs",
    "profile_ids",
    "roms",
    "special_texts",
    "unique_pci_addresses",
    "uuids",
    "virtualports",
    "vlan_tags",
    "vlans",
]

XML_SPECIAL_CHARACTERS = "&<>'\""

# Printable, one line, no characters XML 1.0 cannot carry; a few non-ASCII letters for good measure.
_SAFE_ALPHABET = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:;=+()[]#%!?@éß日本"
    + XML_SPECIAL_CHARACTERS
)


def special_texts(*, min_size: int = 1, max_size: int = 24, forbid: str = "") -> st.SearchStrategy[str]:
    """One-line text without outer whitespace that always holds at least one of ``& < > ' "``."""
    alphabet = _SAFE_ALPHABET.filter(lambda ch: ch not in forbid)
    specials = st.sampled_from(XML_SPECIAL_CHARACTERS)

    @st.composite
    def build(draw: st.DrawFn) -> str:
        body = draw(st.text(alphabet, min_size=max(0, min_size - 1), max_size=max_size - 1))
        position = draw(st.integers(0, len(body)))
        text = body[:position] + draw(specials) + body[position:]
        return text.strip() or draw(specials)

    return build()


def _names(forbid: str) -> st.SearchStrategy[str]:
    plain = st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_."), min_size=1, max_size=20
    ).filter(lambda name: name not in {".", ".."})
    return st.one_of(plain, special_texts(forbid=forbid))


def domain_names() -> st.SearchStrategy[str]:
    # "test" is the domain the test:///default driver ships with; defining it again would clash.
    return _names(forbid="").filter(lambda name: name != "test")


def network_names() -> st.SearchStrategy[str]:
    # "default" ships with test:///default; "/" is refused because the name becomes a file name.
    return _names(forbid="/").filter(lambda name: name != "default")


def uuids() -> st.SearchStrategy[str]:
    return st.uuids().map(str)


def pci_addresses(
    notation: st.SearchStrategy[Notation] | None = None,
    *,
    domain: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[PciAddress]:
    """Any in-range PCI address, written in hex (libvirt's form) or decimal (the RHEL guide's)."""
    return st.builds(
        PciAddress,
        domain=domain if domain is not None else st.integers(0, PCI_LIMITS["domain"]),
        bus=st.integers(0, PCI_LIMITS["bus"]),
        slot=st.integers(0, PCI_LIMITS["slot"]),
        function=st.integers(0, PCI_LIMITS["function"]),
        notation=notation if notation is not None else st.sampled_from(("hex", "decimal")),
    )


def ari_pci_addresses() -> st.SearchStrategy[PciAddress]:
    """An ARI function as libvirt's node-device data may show it: slot 0, function 8..255."""
    return st.builds(
        PciAddress,
        domain=st.integers(0, PCI_LIMITS["domain"]),
        bus=st.integers(0, PCI_LIMITS["bus"]),
        slot=st.just(0),
        function=st.integers(PCI_LIMITS["function"] + 1, ARI_FUNCTION_LIMIT),
        notation=st.just("decimal"),
        ari=st.just(True),
    )


def unique_pci_addresses(*, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[list[PciAddress]]:
    # Uniqueness is by number: the same address in hex and in decimal is the same device.
    return st.lists(pci_addresses(), min_size=min_size, max_size=max_size, unique=True)


def mac_addresses() -> st.SearchStrategy[str]:
    """Unicast MACs (bit 0 of the first octet clear), in either letter case."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        octets = [draw(st.integers(0, 255)) & 0xFE, *(draw(st.integers(0, 255)) for _ in range(5))]
        text = ":".join(f"{octet:02x}" for octet in octets)
        return text.upper() if draw(st.booleans()) else text

    return build()


def roms() -> st.SearchStrategy[Rom]:
    files = st.one_of(st.none(), special_texts(max_size=30).map(lambda text: "/usr/share/" + text))
    return st.builds(Rom, bar=st.one_of(st.none(), st.booleans()), file=files)


def pci_hostdevs(source: st.SearchStrategy[PciAddress] | None = None) -> st.SearchStrategy[PciHostdev]:
    return st.builds(
        PciHostdev,
        source=source if source is not None else pci_addresses(),
        managed=st.one_of(st.none(), st.booleans()),
        driver=st.one_of(st.none(), st.sampled_from(("vfio", "kvm"))),
        guest_address=st.none(),
        rom=st.one_of(st.none(), roms()),
        boot_order=st.none(),
    )


def vlan_tags() -> st.SearchStrategy[VlanTag]:
    return st.builds(VlanTag, id=st.integers(0, 4095), native_mode=st.none())


def vlans() -> st.SearchStrategy[Vlan]:
    """One tag, or a trunk of distinct tags where at most one sets nativeMode."""

    @st.composite
    def build(draw: st.DrawFn) -> Vlan:
        ids = draw(st.lists(st.integers(0, 4095), min_size=1, max_size=5, unique=True))
        trunk = len(ids) > 1 or draw(st.booleans())
        tags = [VlanTag(tag_id) for tag_id in ids]
        if trunk and draw(st.booleans()):
            index = draw(st.integers(0, len(tags) - 1))
            tags[index] = VlanTag(ids[index], draw(st.sampled_from(("tagged", "untagged"))))
        return Vlan(tuple(tags), trunk=trunk)

    return build()


def profile_ids() -> st.SearchStrategy[str]:
    """ASCII, at most 39 characters (libvirt copies it into a 40-byte buffer), and none of
    ``& < > ' "``: libvirt 9 writes <parameters profileid='...'> without escaping, so such a value
    comes back as malformed XML (see LIBVIRT_DEFECTS in harness.xml.normalize)."""
    return st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_.:"), min_size=1, max_size=39)


def virtualports() -> st.SearchStrategy[VirtualPort]:
    qbh = st.builds(VirtualPort8021Qbh, profileid=profile_ids())
    qbg = st.builds(
        VirtualPort8021Qbg,
        managerid=st.integers(0, 255),
        typeid=st.integers(0, 0xFFFFFF),
        typeidversion=st.integers(0, 255),
        instanceid=uuids(),
    )
    return st.one_of(qbh, qbg)


def driver_attributes(*, interface: bool = False) -> st.SearchStrategy[dict[str, str]]:
    """Attributes of a ``<driver>`` the models do not read, never ``name=``: libvirt 10's
    ``model='vfio-pci-igb'`` (a VFIO variant driver) on a hostdev, the virtio ``queues=`` and
    friends that libvirt's parser takes on a hostdev interface, and attributes nobody knows."""
    known = (
        {"queues": st.integers(1, 16).map(str), "txmode": st.sampled_from(("iothread", "timer"))}
        if interface
        else {"model": st.sampled_from(("vfio-pci-igb", "mlx5_vfio_pci", "vfio-pci"))}
    )
    unknown = {"harness-driver-extra": special_texts(max_size=12)}
    return st.fixed_dictionaries({}, optional={**known, **unknown}).filter(bool)


def _with_driver_attributes(
    device: PciHostdev | HostdevInterface, attributes: dict[str, str], keep_name: bool
) -> PciHostdev | HostdevInterface:
    root = device.to_element()
    driver = root.find("driver")
    if driver is None:
        driver = etree.Element("driver")
        root.insert(0, driver)
    if not keep_name and "name" in driver.attrib:
        del driver.attrib["name"]
    for key, value in attributes.items():
        driver.set(key, value)
    text = etree.tostring(root)
    return PciHostdev.parse(text) if isinstance(device, PciHostdev) else HostdevInterface.parse(text)


def hostdevs_with_driver_attributes() -> st.SearchStrategy[PciHostdev | HostdevInterface]:
    """A parsed hostdev or hostdev interface whose ``<driver>`` carries attributes the models do
    not read; mostly without ``name=`` (the shape libvirt's own test data has), sometimes with."""

    @st.composite
    def build(draw: st.DrawFn) -> PciHostdev | HostdevInterface:
        interface = draw(st.booleans())
        device: PciHostdev | HostdevInterface = (
            draw(hostdev_interfaces()) if interface else draw(pci_hostdevs())
        )
        attributes = draw(driver_attributes(interface=interface))
        return _with_driver_attributes(device, attributes, keep_name=draw(st.integers(0, 3)) == 0)

    return build()


def hostdev_interfaces(
    source: st.SearchStrategy[PciAddress] | None = None,
) -> st.SearchStrategy[HostdevInterface]:
    return st.builds(
        HostdevInterface,
        source=source if source is not None else pci_addresses(),
        mac=st.one_of(st.none(), mac_addresses()),
        managed=st.one_of(st.none(), st.booleans()),
        driver=st.one_of(st.none(), st.sampled_from(("vfio", "kvm"))),
        vlan=st.one_of(st.none(), vlans()),
        virtualport=st.one_of(st.none(), virtualports()),
        guest_address=st.none(),
    )


def network_interfaces() -> st.SearchStrategy[NetworkInterface]:
    return st.builds(NetworkInterface, network=network_names(), mac=st.one_of(st.none(), mac_addresses()))


def guest_pci_addresses() -> st.SearchStrategy[PciAddress]:
    """Where the guest sees a device: bus 0 of the guest's root complex, slots 1..31."""
    return st.builds(
        PciAddress,
        domain=st.just(0),
        bus=st.just(0),
        slot=st.integers(1, PCI_LIMITS["slot"]),
        function=st.just(0),
        notation=st.sampled_from(("hex", "decimal")),
    )


def device_lists(*, max_size: int = 4) -> st.SearchStrategy[list[Device]]:
    """Devices for one domain: each host PCI source used once, guest slots and boot orders unique."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Device]:
        kinds = draw(st.lists(st.sampled_from(("hostdev", "interface", "network")), max_size=max_size))
        sources = draw(unique_pci_addresses(min_size=len(kinds), max_size=len(kinds)))
        guest_slots = draw(
            st.lists(
                guest_pci_addresses(), min_size=len(kinds), max_size=len(kinds), unique_by=lambda a: a.slot
            )
        )
        boot_orders = iter(draw(st.permutations(range(1, len(kinds) + 1))))
        devices: list[Device] = []
        for kind, source, guest in zip(kinds, sources, guest_slots, strict=True):
            placed = guest if draw(st.booleans()) else None
            if kind == "hostdev":
                # <address type='unassigned'/>: taken from the host, hidden from the guest (hostdevs only)
                hostdev_place = UnassignedAddress() if draw(st.integers(0, 3)) == 0 else placed
                hostdev = draw(pci_hostdevs(st.just(source)))
                boot = next(boot_orders) if draw(st.booleans()) else None
                devices.append(dataclasses.replace(hostdev, guest_address=hostdev_place, boot_order=boot))
            elif kind == "interface":
                interface = draw(hostdev_interfaces(st.just(source)))
                devices.append(dataclasses.replace(interface, guest_address=placed))
            else:
                devices.append(draw(network_interfaces()))
        return devices

    return build()


def domains(devices: st.SearchStrategy[list[Device]] | None = None) -> st.SearchStrategy[Domain]:
    return st.builds(
        Domain,
        name=domain_names(),
        memory_kib=st.integers(1024, 16 * 1024 * 1024),
        virt_type=st.sampled_from(("qemu", "kvm")),
        uuid=st.one_of(st.none(), uuids()),
        arch=st.one_of(st.none(), st.just("x86_64")),
        devices=(devices if devices is not None else device_lists()).map(tuple),
    )


def _netdev_names() -> st.SearchStrategy[str]:
    # deviceName in basictypes.rng
    return st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_.-"), min_size=1, max_size=15)


def hostdev_forwards() -> st.SearchStrategy[Forward]:
    """``mode='hostdev'`` with a PF, a VF list, or both (as net-dumpxml shows a started pool)."""

    @st.composite
    def build(draw: st.DrawFn) -> Forward:
        shape = draw(st.sampled_from(("pf", "list", "both")))
        pf = draw(_netdev_names()) if shape in ("pf", "both") else None
        addresses = draw(unique_pci_addresses(min_size=1)) if shape in ("list", "both") else []
        return Forward("hostdev", draw(st.one_of(st.none(), st.booleans())), pf, tuple(addresses))

    return build()


def forwards() -> st.SearchStrategy[Forward]:
    other = st.builds(Forward, mode=st.sampled_from(("nat", "route", "open", "bridge")), managed=st.none())
    return st.one_of(hostdev_forwards(), other)


def networks(forward: st.SearchStrategy[Forward] | None = None) -> st.SearchStrategy[Network]:
    return st.builds(
        Network,
        name=network_names(),
        forward=forward if forward is not None else hostdev_forwards(),
        uuid=st.one_of(st.none(), uuids()),
        connections=st.one_of(st.none(), st.integers(0, 64)),
    )


# How people and tools write the numbers libvirt's node-device parser takes (libvirt 9, measured on
# test:///): ids and class in base 16 with or without 0x, either case; the rest in base 10. Each
# format takes the number and gives its text.
NODEDEV_HEX_FORMATS: tuple[str, ...] = (
    "{:#06x}",  # libvirt's own: 0x10c9
    "0x{:04X}",  # upper-case digits: 0x0FFE
    "{:#06X}",  # 0X0FFE
    "{:x}",  # no prefix: ffe
    "{:04X}",  # 0FFE
    "0x{:08x}",  # leading zeros
    "+{:#x}",
    " {:#x}",
)
NODEDEV_DECIMAL_FORMATS: tuple[str, ...] = ("{:d}", "{:03d}", "+{:d}", " {:d}", "\t{:d}")


def pci_id_texts(value: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[str]:
    """A PCI vendor or product id as libvirt takes it, in any of :data:`NODEDEV_HEX_FORMATS`."""
    numbers = value if value is not None else st.integers(0, 0xFFFF)
    return st.tuples(numbers, st.sampled_from(NODEDEV_HEX_FORMATS)).map(lambda pair: pair[1].format(pair[0]))


def pci_ids(*, named: bool | None = None) -> st.SearchStrategy[PciId]:
    name = special_texts(max_size=40)
    names = name if named else st.none() if named is False else st.one_of(st.none(), name)
    return st.builds(PciId, id=pci_id_texts(), name=names)


def iommu_groups(member: PciAddress) -> st.SearchStrategy[IommuGroup]:
    """A group that contains ``member`` plus distinct others, in sorted order like sysfs lists them."""

    @st.composite
    def build(draw: st.DrawFn) -> IommuGroup:
        others = draw(unique_pci_addresses(max_size=3))
        members = sorted({member, *others}, key=lambda a: (a.domain, a.bus, a.slot, a.function))
        return IommuGroup(draw(st.integers(0, 255)), tuple(members))

    return build()


def pci_capabilities(
    address: st.SearchStrategy[PciAddress] | None = None,
) -> st.SearchStrategy[PciCapability]:
    @st.composite
    def build(draw: st.DrawFn) -> PciCapability:
        where = draw(address if address is not None else pci_addresses())
        group = draw(st.one_of(st.none(), iommu_groups(where)))
        classes = st.tuples(st.integers(0, 0xFFFFFF), st.sampled_from(("{:#08x}", "0x{:06X}", "{:x}")))
        pci_class = draw(st.one_of(st.none(), classes.map(lambda pair: pair[1].format(pair[0]))))
        return PciCapability(where, draw(pci_ids()), draw(pci_ids()), pci_class, iommu_group=group)

    return build()


def _device(capability: PciCapability, draw: st.DrawFn) -> NodeDevice:
    parent = draw(st.one_of(st.none(), st.just("computer")))
    driver = draw(st.one_of(st.none(), st.sampled_from(("vfio-pci", "igb", "igbvf", "e1000e", "ixgbe"))))
    return NodeDevice.for_address(capability, parent=parent, driver=driver)


def pf_with_vfs(*, max_vfs: int = 7) -> st.SearchStrategy[tuple[NodeDevice, list[NodeDevice]]]:
    """A PF and its VFs that agree: the PF's virt_functions list is exactly the VFs' addresses and
    each VF's phys_function is the PF; all addresses are distinct."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[NodeDevice, list[NodeDevice]]:
        addresses = draw(unique_pci_addresses(min_size=1, max_size=max_vfs + 1))
        pf_address, vf_addresses = addresses[0], addresses[1:]
        max_count = draw(st.one_of(st.none(), st.integers(len(vf_addresses), 64)))
        base = draw(pci_capabilities(st.just(pf_address)))
        pf_capability = dataclasses.replace(
            base, virt_functions=VirtFunctions(tuple(vf_addresses), max_count)
        )
        vfs = []
        for vf_address in vf_addresses:
            vf_capability = dataclasses.replace(
                draw(pci_capabilities(st.just(vf_address))), phys_function=pf_address
            )
            vfs.append(_device(vf_capability, draw))
        return _device(pf_capability, draw), vfs

    return build()


def node_devices() -> st.SearchStrategy[NodeDevice]:
    """A plain PCI device, an ARI function past 7, a PF with VFs, or one of those VFs."""

    @st.composite
    def build(draw: st.DrawFn) -> NodeDevice:
        kind = draw(st.sampled_from(("plain", "ari", "pf", "vf")))
        if kind == "plain":
            return _device(draw(pci_capabilities()), draw)
        if kind == "ari":
            # No IOMMU group: sysfs lists its members in the split devfn form (0000:08:19.0), which the
            # generated group would have to mirror.
            capability = PciCapability(draw(ari_pci_addresses()), draw(pci_ids()), draw(pci_ids()))
            return _device(capability, draw)
        pf, vfs = draw(pf_with_vfs())
        if kind == "vf" and vfs:
            return vfs[draw(st.integers(0, len(vfs) - 1))]
        return pf

    return build()


def _text_element(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


@st.composite
def _net_capability(draw: st.DrawFn) -> str:
    interface = draw(_netdev_names())
    mac = draw(mac_addresses()).lower()
    link = draw(st.sampled_from(("", "<link state='up' speed='1000'/>", "<link state='down'/>")))
    return (
        f"<capability type='net'>{_text_element('interface', interface)}<address>{mac}</address>"
        f"{link}<capability type='80203'/></capability>"
    )


@st.composite
def _usb_device_capability(draw: st.DrawFn) -> str:
    product = draw(pci_id_texts())
    vendor = draw(pci_id_texts())
    name = draw(st.one_of(st.none(), special_texts(max_size=20)))
    product_element = (
        f"<product id={quoteattr(product)}/>"
        if name is None
        else f"<product id={quoteattr(product)}>{escape(name)}</product>"
    )
    return (
        f"<capability type='usb_device'><bus>{draw(st.integers(1, 8))}</bus>"
        f"<device>{draw(st.integers(1, 127))}</device>{product_element}<vendor id={quoteattr(vendor)}/>"
        "</capability>"
    )


@st.composite
def _scsi_host_capability(draw: st.DrawFn) -> str:
    return (
        f"<capability type='scsi_host'><host>{draw(st.integers(0, 64))}</host>"
        f"<unique_id>{draw(st.integers(0, 64))}</unique_id></capability>"
    )


_NON_PCI_CAPABILITIES = {
    "net": _net_capability,
    "usb_device": _usb_device_capability,
    "scsi_host": _scsi_host_capability,
}


def non_pci_node_devices() -> st.SearchStrategy[NonPciNodeDevice]:
    """A ``net``, ``usb_device`` or ``scsi_host`` node device as nodedev-dumpxml shows one, parsed:
    what its capability holds is not modelled, so it exists only as a parsed document."""

    @st.composite
    def build(draw: st.DrawFn) -> NonPciNodeDevice:
        kind = draw(st.sampled_from(tuple(_NON_PCI_CAPABILITIES)))
        name = f"{kind}_{draw(_netdev_names())}"
        parent = draw(st.one_of(st.none(), st.just("computer")))
        driver = draw(st.one_of(st.none(), st.sampled_from(("usb", "e1000e", "virtio_scsi"))))
        parts = [_text_element("name", name)]
        if parent is not None:
            parts.append(_text_element("parent", parent))
        if driver is not None:
            parts.append(f"<driver>{_text_element('name', driver)}</driver>")
        parts.append(draw(_NON_PCI_CAPABILITIES[kind]()))
        return NonPciNodeDevice.parse(f"<device>{''.join(parts)}</device>")

    return build()
