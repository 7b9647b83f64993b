"""Properties of the XML models against libvirt's own parser (test:/// driver) and RelaxNG schemas.

Runs without libvirtd: ``test:///default`` parses and formats in-process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from harness import strategies as hs
from harness.hypothesis_profiles import register_profiles
from harness.libvirt.xml_oracle import (
    define_domain,
    define_network,
    dump_nodedev,
    open_test_connection,
    rejection_of_domain_xml,
    rejection_of_network_xml,
)
from harness.xml import (
    Device,
    Domain,
    HostdevInterface,
    MalformedXmlError,
    Network,
    NodeDevice,
    NonPciNodeDevice,
    PciAddress,
    PciCapability,
    PciHostdev,
    PciId,
    Rom,
    VirtualPort8021Qbh,
    XmlModelError,
)
from harness.xml.address import PCI_LIMITS
from harness.xml.network import FORWARD_MODES
from harness.xml.normalize import LIBVIRT_DEFECTS, expected_domain, expected_network, expected_nodedev
from harness.xml.schema import SchemaKind, SchemaMissingError, load_schema, schema_errors

register_profiles()


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    connection = open_test_connection()
    yield connection
    connection.close()


def _schema_or_skip(kind: SchemaKind) -> None:
    try:
        load_schema(kind)
    except SchemaMissingError as error:
        pytest.skip(str(error))


# --- the models alone ------------------------------------------------------------------------


@given(hs.domains())
def test_domain_model_round_trip_is_identity(domain: Domain) -> None:
    assert Domain.parse(domain.to_xml()) == domain


@given(hs.pci_hostdevs())
def test_hostdev_model_round_trip_is_identity(hostdev: PciHostdev) -> None:
    again = PciHostdev.parse(hostdev.to_xml())
    assert again == hostdev
    assert again.source.notation == hostdev.source.notation


@given(hs.hostdev_interfaces())
def test_hostdev_interface_model_round_trip_is_identity(interface: HostdevInterface) -> None:
    assert HostdevInterface.parse(interface.to_xml()) == interface


@given(hs.networks(hs.forwards()))
def test_network_model_round_trip_is_identity(network: Network) -> None:
    assert Network.parse(network.to_xml()) == network


@given(hs.node_devices())
def test_nodedev_model_round_trip_is_identity(device: NodeDevice) -> None:
    assert NodeDevice.parse(device.to_xml()) == device


# --- through libvirt ---------------------------------------------------------------------------


@given(hs.domains())
def test_domain_libvirt_round_trip_preserves_meaning(conn: Any, domain: Domain) -> None:
    _text, returned = define_domain(conn, domain)
    assert returned == expected_domain(domain, returned)


@given(hs.networks())
def test_network_libvirt_round_trip_preserves_meaning(conn: Any, network: Network) -> None:
    _text, returned = define_network(conn, network)
    assert returned == expected_network(network, returned)


@given(hs.node_devices())
def test_nodedev_libvirt_round_trip_preserves_meaning(device: NodeDevice) -> None:
    _text, returned = dump_nodedev(device)
    assert returned == expected_nodedev(device)


@given(hs.special_texts(), hs.special_texts(forbid="/"), hs.special_texts(max_size=30))
def test_special_characters_come_back_intact(conn: Any, name: str, network_name: str, text: str) -> None:
    rom = Rom(file="/usr/share/" + text)
    domain = Domain(name=name, memory_kib=4096, devices=(PciHostdev(PciAddress(0, 1, 0, 0), rom=rom),))
    _xml, returned_domain = define_domain(conn, domain)
    assert returned_domain.name == name
    assert returned_domain.devices == (PciHostdev(PciAddress(0, 1, 0, 0), managed=False, rom=rom),)

    _xml, returned_network = define_network(conn, Network(network_name))
    assert returned_network.name == network_name

    capability = PciCapability(PciAddress(0, 1, 0, 0), PciId("0x10c9", text), PciId("0x8086", text))
    _xml, returned_device = dump_nodedev(NodeDevice.for_address(capability))
    assert returned_device.capability.product.name == text
    assert returned_device.capability.vendor.name == text


# --- RelaxNG ------------------------------------------------------------------------------------


@given(hs.domains())
def test_generated_domains_validate_against_libvirt_schema(domain: Domain) -> None:
    _schema_or_skip("domain")
    assert schema_errors("domain", domain.to_element()) == []


@given(hs.networks(hs.forwards()))
def test_generated_networks_validate_against_libvirt_schema(network: Network) -> None:
    _schema_or_skip("network")
    assert schema_errors("network", network.to_element()) == []


@given(hs.node_devices())
def test_generated_nodedevs_validate_against_libvirt_schema(device: NodeDevice) -> None:
    _schema_or_skip("nodedev")
    # nodedev.rng's hexuint is stricter than libvirt's parser (lower case, 0x optional): ids and
    # class go in libvirt's own notation here; that the parser takes the others is tested below.
    as_libvirt_writes = dataclasses.replace(expected_nodedev(device), driver=device.driver)
    assert schema_errors("nodedev", as_libvirt_writes.to_element()) == []


# --- invalid documents: refused by libvirt and by the models, with the problem named ----------

_DOMAIN_WITH_HOSTDEV = hs.domains(
    hs.device_lists(max_size=2).flatmap(
        lambda devices: (
            hs.pci_hostdevs()
            .filter(lambda h: all(getattr(d, "source", None) != h.source for d in devices))
            .map(lambda hostdev: [hostdev, *devices])
        )
    )
)


def _first(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    assert found is not None, path
    return found


def _assert_model_names(error: XmlModelError, element: str, needle: str) -> None:
    assert error.element == element, str(error)
    assert needle in str(error), str(error)


@given(_DOMAIN_WITH_HOSTDEV, st.sampled_from(("mac", "vlan", "virtualport")))
def test_interface_only_children_in_hostdev_are_refused(conn: Any, domain: Domain, child: str) -> None:
    root = domain.to_element()
    hostdev = _first(root, "devices/hostdev")
    if child == "mac":
        etree.SubElement(hostdev, "mac", address="52:54:00:00:00:01")
    elif child == "vlan":
        etree.SubElement(etree.SubElement(hostdev, "vlan"), "tag", id="42")
    else:
        port = etree.SubElement(hostdev, "virtualport", type="802.1Qbh")
        etree.SubElement(port, "parameters", profileid="finance")
    xml = etree.tostring(root, encoding="unicode")

    assert rejection_of_domain_xml(conn, xml) is not None
    with pytest.raises(XmlModelError) as caught:
        Domain.parse(xml)
    _assert_model_names(caught.value, "hostdev", f"<{child}>")


@st.composite
def _out_of_range(draw: st.DrawFn) -> tuple[str, int]:
    part = draw(st.sampled_from(tuple(PCI_LIMITS)))
    # libvirt takes a 32-bit PCI domain (LIBVIRT_DEFECTS["pci-domain-32bit"]): only past that do both refuse.
    low = 0x1_0000_0000 if part == "domain" else PCI_LIMITS[part] + 1
    return part, draw(st.integers(low, low * 16))


@given(_DOMAIN_WITH_HOSTDEV, _out_of_range(), st.booleans())
def test_out_of_range_pci_addresses_are_refused(
    conn: Any, domain: Domain, bad: tuple[str, int], as_hex: bool
) -> None:
    part, value = bad
    root = domain.to_element()
    address = _first(root, "devices/hostdev/source/address")
    address.set(part, hex(value) if as_hex else str(value))
    xml = etree.tostring(root, encoding="unicode")

    assert rejection_of_domain_xml(conn, xml) is not None
    with pytest.raises(XmlModelError) as caught:
        Domain.parse(xml)
    _assert_model_names(caught.value, "address", part)


@given(st.integers(0x1_0000, 0xFFFF_FFFF))
def test_pci_domain_past_16_bits_is_refused_by_models(value: int) -> None:
    with pytest.raises(XmlModelError) as caught:
        PciHostdev.parse(
            f"<hostdev mode='subsystem' type='pci'><source><address domain='{value:#x}' bus='0' "
            "slot='0' function='0'/></source></hostdev>"
        )
    _assert_model_names(caught.value, "address", "domain")


_BAD_MACS = st.one_of(
    hs.mac_addresses().map(lambda mac: f"{int(mac[:2], 16) | 1:02x}" + mac[2:]),  # multicast
    hs.mac_addresses().map(lambda mac: mac[:-1]),  # one digit short
    hs.mac_addresses().map(lambda mac: mac.replace(":", "-")),
    hs.mac_addresses().map(lambda mac: "zz" + mac[2:]),
)


@given(hs.hostdev_interfaces(), _BAD_MACS)
def test_bad_macs_are_refused(conn: Any, interface: HostdevInterface, mac: str) -> None:
    domain = Domain(name="bad-mac", memory_kib=4096, devices=(interface,))
    root = domain.to_element()
    interface_element = _first(root, "devices/interface")
    for old in interface_element.findall("mac"):
        interface_element.remove(old)
    etree.SubElement(interface_element, "mac", address=mac)
    xml = etree.tostring(root, encoding="unicode")

    assert rejection_of_domain_xml(conn, xml) is not None
    with pytest.raises(XmlModelError) as caught:
        Domain.parse(xml)
    _assert_model_names(caught.value, "mac", mac)


@given(hs.networks(), st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=1, max_size=12))
def test_unknown_forward_modes_are_refused(conn: Any, network: Network, mode: str) -> None:
    assume(mode not in FORWARD_MODES)
    root = network.to_element()
    _first(root, "forward").set("mode", mode)
    xml = etree.tostring(root, encoding="unicode")

    assert rejection_of_network_xml(conn, xml) is not None
    with pytest.raises(XmlModelError) as caught:
        Network.parse(xml)
    _assert_model_names(caught.value, "forward", mode)


# --- the libvirt defects the strategies steer around are still there --------------------------
# When one of these fails, libvirt changed: drop the entry from LIBVIRT_DEFECTS and widen the strategy.


def test_defect_virtualport_profileid_is_formatted_unescaped(conn: Any) -> None:
    interface = HostdevInterface(PciAddress(0, 5, 0x10, 0), virtualport=VirtualPort8021Qbh("a&b<c"))
    domain = Domain(name="defect-virtualport", memory_kib=4096, devices=(interface,))
    assert "virtualport-unescaped" in LIBVIRT_DEFECTS
    with pytest.raises(MalformedXmlError):
        define_domain(conn, domain)


def test_defect_pci_domain_is_32_bit_in_libvirt(conn: Any) -> None:
    root = Domain(name="defect-domain", memory_kib=4096, devices=(PciHostdev(PciAddress(0, 1, 0, 0)),))
    element = root.to_element()
    _first(element, "devices/hostdev/source/address").set("domain", "0x10000")
    assert "pci-domain-32bit" in LIBVIRT_DEFECTS
    assert rejection_of_domain_xml(conn, etree.tostring(element, encoding="unicode")) is None


# --- models and libvirt agree on accept/refuse for documents libvirt's parser checks --------------
# One test per mutation: a quarter of the profile's examples each keeps the suite in seconds
# (ci: 10 per mutation) while nightly still runs hundreds.
_PER_MUTATION = settings(max_examples=max(10, settings().max_examples // 4))
# Each mutation makes a generated valid document break (or, for the ``accepted-*`` ones, stretch) one
# rule libvirt's parser enforces on hostdevs, hostdev interfaces and hostdev networks; both sides
# must refuse it (naming the element), or both take it. ``None`` leaves the document as generated.

DomainMutation = Callable[[etree._Element], None]


def _devices(root: etree._Element, xpath: str) -> list[etree._Element]:
    return list(root.iterfind(f"devices/{xpath}"))


def _host_devices(root: etree._Element) -> list[etree._Element]:
    return _devices(root, "hostdev") + _devices(root, "interface[@type='hostdev']")


def _duplicate_source(root: etree._Element) -> None:
    first = _host_devices(root)[0]
    copy = etree.fromstring(etree.tostring(first))
    for child in copy.findall("boot") + copy.findall("address"):
        copy.remove(child)
    _first(root, "devices").append(copy)


def _set_only(device: etree._Element, tag: str, **attributes: str) -> etree._Element:
    """Replace every ``<tag>`` child of ``device`` by one with ``attributes``."""
    for old in device.findall(tag):
        device.remove(old)
    return etree.SubElement(device, tag, attributes)


def _duplicate_boot_order(root: etree._Element) -> None:
    for device in _host_devices(root)[:2]:
        _set_only(device, "boot", order="99")


def _unassigned_interface(root: etree._Element) -> None:
    _set_only(_devices(root, "interface[@type='hostdev']")[0], "address", type="unassigned")


def _unassigned_hostdev(root: etree._Element) -> None:
    _set_only(_devices(root, "hostdev")[0], "address", type="unassigned")


def _disabled_rom_with_bar(root: etree._Element) -> None:
    _set_only(_devices(root, "hostdev")[0], "rom", enabled="no", bar="on")


def _interface_vlan(root: etree._Element, trunk: str | None, *tags: dict[str, str]) -> None:
    vlan = _set_only(_devices(root, "interface[@type='hostdev']")[0], "vlan")
    if trunk is not None:
        vlan.set("trunk", trunk)
    for tag in tags:
        etree.SubElement(vlan, "tag", tag)


def _duplicate_user_alias(root: etree._Element) -> None:
    for device in _host_devices(root)[:2]:
        _set_only(device, "alias", name="ua-twice")


def _os_boot_beside_device_boot(root: etree._Element) -> None:
    etree.SubElement(_first(root, "os"), "boot", dev="hd")
    _set_only(_host_devices(root)[0], "boot", order="1")


def _drive_address_on_hostdev(root: etree._Element) -> None:
    _set_only(_devices(root, "hostdev")[0], "address", type="drive", controller="0", bus="0", unit="0")


def _relative_rom_file(root: etree._Element) -> None:
    _set_only(_devices(root, "hostdev")[0], "rom", file="roms/relative.rom")


def _teaming(**attributes: str) -> DomainMutation:
    def add(root: etree._Element) -> None:
        _set_only(_devices(root, "interface[@type='hostdev']")[0], "teaming", **attributes)

    return add


# (name, needs: "host" any hostdev or hostdev interface / "hostdev" / "interface", mutation)
DOMAIN_MUTATIONS: dict[str, tuple[str, DomainMutation]] = {
    "duplicate-source": ("host", _duplicate_source),
    "duplicate-boot-order": ("two-hosts", _duplicate_boot_order),
    "unassigned-interface": ("interface", _unassigned_interface),
    "disabled-rom-with-bar": ("hostdev", _disabled_rom_with_bar),
    "vlan-trunk-no-several-tags": (
        "interface",
        lambda root: _interface_vlan(root, "no", {"id": "5"}, {"id": "6"}),
    ),
    "vlan-trunk-no-native": (
        "interface",
        lambda root: _interface_vlan(root, "no", {"id": "5", "nativeMode": "untagged"}),
    ),
    "vlan-two-natives": (
        "interface",
        lambda root: _interface_vlan(
            root, "yes", {"id": "5", "nativeMode": "untagged"}, {"id": "6", "nativeMode": "tagged"}
        ),
    ),
    "transient-teaming-without-persistent": ("interface", _teaming(type="transient")),
    "persistent-teaming-naming-a-persistent": ("interface", _teaming(type="persistent", persistent="ua-x")),
    "duplicate-user-alias": ("two-hosts", _duplicate_user_alias),
    "os-boot-beside-device-boot": ("host", _os_boot_beside_device_boot),
    "drive-address-on-hostdev": ("hostdev", _drive_address_on_hostdev),
    # libvirt takes these; the models used to refuse them
    "accepted-unassigned-hostdev": ("hostdev", _unassigned_hostdev),
    "accepted-relative-rom-file": ("hostdev", _relative_rom_file),
    "accepted-transient-teaming": ("interface", _teaming(type="transient", persistent="ua-backup")),
    "accepted-vlan-implicit-trunk": (
        "interface",
        lambda root: _interface_vlan(root, None, {"id": "5", "nativeMode": "untagged"}, {"id": "6"}),
    ),
}


def _applies(needs: str, root: etree._Element) -> bool:
    hosts = _host_devices(root)
    return {
        "host": len(hosts) >= 1,
        "two-hosts": len(hosts) >= 2,
        "hostdev": bool(_devices(root, "hostdev")),
        "interface": bool(_devices(root, "interface[@type='hostdev']")),
    }[needs]


def _model_refusal(parse: Callable[[str], object], xml: str) -> XmlModelError | None:
    try:
        parse(xml)
    except XmlModelError as error:
        return error
    return None


def _assert_agreement(
    xml: str,
    mutation: str | None,
    parse: Callable[[str], object],
    libvirt_rejection: Callable[[str], str | None],
    virsh: str,
) -> None:
    """Both refuse (the models naming the line) or both accept; and refusal is the mutation's due."""
    model = _model_refusal(parse, xml)
    libvirt_says = libvirt_rejection(xml)
    assert (model is None) == (libvirt_says is None), (
        f"models {'refused: ' + str(model) if model else 'accepted'}; "
        f"libvirt {'refused: ' + libvirt_says if libvirt_says else 'accepted'}; "
        f"reproduce: {virsh.replace('virsh', 'virsh -c test:///default')} FILE with FILE =\n{xml}"
    )
    assert (model is None) == (mutation is None or mutation.startswith("accepted-")), (mutation, xml)
    if model is not None:
        assert model.line is not None, str(model)  # a refusal names where


@st.composite
def _domains_with_host_devices(draw: st.DrawFn) -> Domain:
    """A domain holding at least one <hostdev> and one <interface type='hostdev'>, plus others."""
    sources = draw(hs.unique_pci_addresses(min_size=2, max_size=2))
    others = draw(hs.device_lists(max_size=2))
    assume(all(getattr(device, "source", None) not in sources for device in others))
    required: list[Device] = [
        draw(hs.pci_hostdevs(st.just(sources[0]))),
        draw(hs.hostdev_interfaces(st.just(sources[1]))),
    ]
    devices = draw(st.permutations([*required, *others]))
    return draw(hs.domains(st.just(devices)))


@pytest.mark.parametrize("mutation", [None, *DOMAIN_MUTATIONS])
@_PER_MUTATION
@given(domain=_domains_with_host_devices())
def test_models_and_libvirt_agree_on_domains(conn: Any, mutation: str | None, domain: Domain) -> None:
    root = domain.to_element()
    if mutation is not None:
        needs, mutate = DOMAIN_MUTATIONS[mutation]
        assume(_applies(needs, root))
        mutate(root)
    # Parser checks, not schema ones: without the schema flag libvirt is ~30x faster here, and the
    # generated documents' schema validity is the business of the RelaxNG tests above.
    _assert_agreement(
        etree.tostring(root, encoding="unicode"),
        mutation,
        Domain.parse,
        lambda xml: rejection_of_domain_xml(conn, xml, validate=False),
        "virsh define",
    )


NetworkMutation = Callable[[etree._Element], None]


def _forward(root: etree._Element) -> etree._Element:
    return _first(root, "forward")


def _network_bridge(root: etree._Element) -> None:
    etree.SubElement(root, "bridge", name="virbr9")


def _forward_dev(root: etree._Element) -> None:
    _forward(root).set("dev", "enp5s0f0")


def _untyped_address(root: etree._Element) -> None:
    etree.SubElement(_forward(root), "address", domain="0", bus="5", slot="16", function="0")


def _duplicate_vf(root: etree._Element) -> None:
    forward = _forward(root)
    address = dict(type="pci", domain="0", bus="0x42", slot="0x10", function="0x1")
    etree.SubElement(forward, "address", address)
    etree.SubElement(forward, "address", {**address, "bus": "66", "slot": "16", "function": "1"})


def _second_pf(root: etree._Element) -> None:
    forward = _forward(root)
    etree.SubElement(forward, "pf", dev="pf-a")
    etree.SubElement(forward, "pf", dev="pf-b")


def _network_vlan(trunk: str | None, *tags: dict[str, str]) -> NetworkMutation:
    def add(root: etree._Element) -> None:
        vlan = etree.SubElement(root, "vlan")
        if trunk is not None:
            vlan.set("trunk", trunk)
        for tag in tags:
            etree.SubElement(vlan, "tag", tag)

    return add


NETWORK_MUTATIONS: dict[str, NetworkMutation] = {
    "bridge-name-in-hostdev-mode": _network_bridge,
    "forward-dev-beside-pf-or-address": _forward_dev,
    "vf-address-without-type": _untyped_address,
    "vf-listed-twice": _duplicate_vf,
    "two-pf": _second_pf,
    "vlan-trunk-no-native": _network_vlan("no", {"id": "7", "nativeMode": "untagged"}),
    "vlan-trunk-no-several-tags": _network_vlan("no", {"id": "7"}, {"id": "8"}),
    "accepted-vlan-trunk": _network_vlan("yes", {"id": "7", "nativeMode": "tagged"}, {"id": "8"}),
}


@given(hs.networks(), st.sampled_from((None, *NETWORK_MUTATIONS)))
def test_models_and_libvirt_agree_on_hostdev_networks(
    conn: Any, network: Network, mutation: str | None
) -> None:
    root = network.to_element()
    if mutation is not None:
        forward = _forward(root)
        has_children = forward.find("pf") is not None or forward.find("address") is not None
        assume(mutation != "forward-dev-beside-pf-or-address" or has_children)
        if mutation in ("two-pf", "vf-listed-twice"):  # a clean pool, so the mutation is the only fault
            for child in list(forward):
                forward.remove(child)
        NETWORK_MUTATIONS[mutation](root)
    _assert_agreement(
        etree.tostring(root, encoding="unicode"),
        mutation,
        Network.parse,
        lambda xml: rejection_of_network_xml(conn, xml, validate=False),
        "virsh net-define",
    )


def test_bridge_and_passthrough_networks_may_list_vf_addresses(conn: Any) -> None:
    """libvirt takes <address> entries in other forward modes too; the models used to refuse them."""
    for mode in ("bridge", "passthrough"):
        xml = (
            f"<network><name>pool-{mode}</name><forward mode='{mode}'>"
            "<address type='pci' domain='0' bus='5' slot='16' function='0'/></forward></network>"
        )
        assert rejection_of_network_xml(conn, xml) is None
        assert Network.parse(xml).forward is not None


# --- every notation libvirt's parser takes for a PCI address part means the same to the models -----

_NOTATIONS = ("{:d}", "{:#x}", "{:#X}", "0x{:X}", "{:#06x}", "0{:o}", "+{:d}", " {:d}", "+{:#x}")
_NOT_NUMBERS = ("{:d} ", "{:d}x", "0x", "", "-{:d}", "{:d}.0", "0b{:b}")


@st.composite
def _written_address(draw: st.DrawFn, formats: tuple[str, ...]) -> tuple[PciAddress, dict[str, str]]:
    address = draw(hs.pci_addresses())
    written = {part: draw(st.sampled_from(formats)).format(getattr(address, part)) for part in PCI_LIMITS}
    return address, written


def _hostdev_domain_xml(written: dict[str, str]) -> str:
    attributes = " ".join(f"{part}='{text}'" for part, text in written.items())
    return (
        "<domain type='qemu'><name>notation</name><memory>4096</memory><os><type>hvm</type></os>"
        f"<devices><hostdev mode='subsystem' type='pci'><source><address {attributes}/></source>"
        "</hostdev></devices></domain>"
    )


@given(_written_address(_NOTATIONS))
def test_every_address_notation_libvirt_reads_means_the_same_to_the_models(
    conn: Any, case: tuple[PciAddress, dict[str, str]]
) -> None:
    address, written = case
    xml = _hostdev_domain_xml(written)
    # libvirt's parser, not its schema: domain.rng is stricter than the parser about '+' and blanks.
    assert rejection_of_domain_xml(conn, xml, validate=False) is None, xml
    defined = conn.defineXML(xml)
    try:
        read_back = Domain.parse(defined.XMLDesc(0)).devices[0]
    finally:
        defined.undefine()
    parsed = Domain.parse(xml)
    assert isinstance(read_back, PciHostdev)
    assert parsed.devices == (PciHostdev(address),) and read_back.source == address, xml
    written_back = etree.tostring(parsed.to_element(), encoding="unicode")
    assert _canonical_text(written_back) == _canonical_text(xml), f"notation not kept: {written_back}"


@given(_written_address(_NOT_NUMBERS))
def test_notations_libvirt_refuses_are_refused_by_the_models(
    conn: Any, case: tuple[PciAddress, dict[str, str]]
) -> None:
    _address, written = case
    xml = _hostdev_domain_xml(written)
    assert rejection_of_domain_xml(conn, xml, validate=False) is not None, xml
    with pytest.raises(XmlModelError) as caught:
        Domain.parse(xml)
    assert caught.value.element == "address", str(caught.value)


def _canonical_text(xml: str) -> bytes:
    return etree.tostring(etree.fromstring(xml), method="c14n")


# --- what libvirt's parser takes, the models take and write back without loss (issue 18) ----------


@given(hs.non_pci_node_devices())
def test_non_pci_nodedev_libvirt_round_trip(device: NonPciNodeDevice) -> None:
    _text, returned = dump_nodedev(device)
    assert returned == expected_nodedev(device)


@st.composite
def _written_nodedev(draw: st.DrawFn) -> tuple[dict[str, int], str]:
    numbers = {part: draw(st.integers(0, limit)) for part, limit in PCI_LIMITS.items()}
    numbers |= {"product": draw(st.integers(0, 0xFFFF)), "vendor": draw(st.integers(0, 0xFFFF))}
    numbers |= {"class": draw(st.integers(0, 0xFFFFFF)), "group": draw(st.integers(0, 255))}
    decimal = {p: draw(st.sampled_from(hs.NODEDEV_DECIMAL_FORMATS)).format(numbers[p]) for p in PCI_LIMITS}
    hexa = {
        p: draw(st.sampled_from(hs.NODEDEV_HEX_FORMATS)).format(numbers[p]) for p in ("product", "vendor")
    }
    klass = draw(st.sampled_from(("{:#08x}", "0x{:06X}", "{:x}", " +{:#X}"))).format(numbers["class"])
    group = draw(st.sampled_from(hs.NODEDEV_DECIMAL_FORMATS)).format(numbers["group"]).replace("\t", " ")
    parts = "".join(f"<{p}>{decimal[p]}</{p}>" for p in PCI_LIMITS)
    xml = (
        "<device><name>pci_written</name><parent>computer</parent><capability type='pci'>"
        f"<class>{klass}</class>{parts}<product id='{hexa['product']}'/><vendor id='{hexa['vendor']}'/>"
        f"<iommuGroup number='{group}'><address domain='0' bus='0' slot='0' function='0'/></iommuGroup>"
        "</capability></device>"
    )
    return numbers, xml


@given(_written_nodedev())
def test_every_nodedev_notation_libvirt_reads_means_the_same_to_the_models(
    case: tuple[dict[str, int], str],
) -> None:
    numbers, xml = case
    device = NodeDevice.parse(xml)
    capability = device.capability
    address = capability.address
    assert [getattr(address, p) for p in PCI_LIMITS] == [numbers[p] for p in PCI_LIMITS], xml
    assert (capability.product.number, capability.vendor.number) == (numbers["product"], numbers["vendor"])
    assert capability.iommu_group is not None and capability.iommu_group.number == numbers["group"]
    written = etree.tostring(device.to_element(), encoding="unicode")
    assert _canonical_text(written) == _canonical_text(xml), f"not kept as written: {written}"
    _text, returned = dump_nodedev(device)  # libvirt's parser takes it, and means the same
    assert returned == expected_nodedev(device), xml
    assert returned.capability.pci_class == f"0x{numbers['class']:06x}"


@given(hs.hostdevs_with_driver_attributes())
def test_driver_without_name_is_taken_by_libvirt_and_kept_by_the_models(
    conn: Any, device: PciHostdev | HostdevInterface
) -> None:
    domain = Domain(name="driver-attributes", memory_kib=4096, devices=(device,))
    xml = etree.tostring(domain.to_element(), encoding="unicode")
    # The parser, not the schema: libvirt 9's domain.rng has no hostdev <driver model=> (10.0 has).
    assert rejection_of_domain_xml(conn, xml, validate=False) is None, xml
    assert device.parsed_from is not None
    written = Domain.parse(xml).to_element().find("devices/*")
    assert written is not None
    assert _canonical_text(etree.tostring(written, encoding="unicode")) == _canonical_text(
        etree.tostring(device.parsed_from, encoding="unicode")
    )
