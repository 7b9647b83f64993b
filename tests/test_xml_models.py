"""Fast tests of the XML models: golden files, error messages, helpers, and that the properties bite."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from harness import strategies as hs
from harness.hypothesis_profiles import PROFILES, register_profiles
from harness.xml import (
    Domain,
    Forward,
    HostdevInterface,
    IommuGroup,
    MalformedXmlError,
    Network,
    NetworkInterface,
    NodeDevice,
    NonPciNodeDevice,
    PciAddress,
    PciCapability,
    PciHostdev,
    PciId,
    Rom,
    VirtFunctions,
    VirtualPort8021Qbg,
    VirtualPort8021Qbh,
    Vlan,
    VlanTag,
    XmlModelError,
)
from harness.xml.corpus import document_kind, parse_any, wrap_devices
from harness.xml.guest import KernelBoot, PciController, SerialLog

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "xml"


def _read(name: str) -> str:
    return (CORPUS / name).read_text()


# --- addresses ------------------------------------------------------------------------------------


def test_bdf_helpers() -> None:
    address = PciAddress.from_bdf("0000:01:00.0")
    assert address == PciAddress(0, 1, 0, 0)
    assert address.nodedev_name == "pci_0000_01_00_0"
    assert PciAddress.from_bdf("0000:02:10.7").nodedev_name == "pci_0000_02_10_7"
    assert PciAddress.from_nodedev_name("pci_0000_00_1f_3").bdf == "0000:00:1f.3"
    assert PciAddress.from_bdf("1f:00.1") == PciAddress(0, 0x1F, 0, 1)
    assert PciAddress.from_nodedev_name("pci_ffff_ff_1f_7").bdf == "ffff:ff:1f.7"


@pytest.mark.parametrize("bad", ["0000:01:00", "0000:01:20.0", "0000:01:00.8", "x", "10000:00:00.0"])
def test_bad_bdf_is_refused(bad: str) -> None:
    with pytest.raises(XmlModelError):
        PciAddress.from_bdf(bad)


def test_decimal_and_hex_addresses_are_the_same_device() -> None:
    decimal = PciHostdev.parse(_read("valid/hostdev-decimal-address.xml"))
    assert decimal.source == PciAddress(0, 0, 20, 0)
    assert decimal.source.notation == "decimal"
    assert 'slot="20"' in decimal.to_xml()  # kept as written
    hexed = PciHostdev(PciAddress(0, 0, 0x14, 0), managed=True)
    assert hexed == decimal
    assert 'slot="0x14"' in hexed.to_xml()


def test_leading_zero_is_octal_like_libvirt() -> None:
    hostdev = PciHostdev.parse(
        "<hostdev mode='subsystem' type='pci'><source>"
        "<address domain='0' bus='010' slot='0' function='0'/></source></hostdev>"
    )
    assert hostdev.source.bus == 8


# --- golden files ---------------------------------------------------------------------------------


def test_golden_hostdev_interface() -> None:
    parsed = HostdevInterface.parse(_read("valid/interface-hostdev-qbg-trunk.xml"))
    assert parsed == HostdevInterface(
        source=PciAddress(0, 4, 16, 3),
        mac="02:00:00:aa:bb:01",
        managed=True,
        driver="kvm",
        vlan=Vlan((VlanTag(10, "untagged"), VlanTag(20), VlanTag(30)), trunk=True),
        virtualport=VirtualPort8021Qbg(7, 4193, 1, "5b2f5a3e-7c1d-4e0a-9f6b-2d8c1e4a7b90"),
    )


def test_golden_hostdev_build() -> None:
    hostdev = PciHostdev(
        PciAddress(0, 3, 0, 1),
        managed=False,
        driver="vfio",
        rom=Rom(bar=False, file="/roms/a&b.rom"),
        boot_order=2,
    )
    assert hostdev.to_xml() == (
        '<hostdev mode="subsystem" type="pci" managed="no">\n'
        '  <driver name="vfio"/>\n'
        "  <source>\n"
        '    <address domain="0x0000" bus="0x03" slot="0x00" function="0x1"/>\n'
        "  </source>\n"
        '  <boot order="2"/>\n'
        '  <rom bar="off" file="/roms/a&amp;b.rom"/>\n'
        "</hostdev>\n"
    )


def test_golden_network_dumpxml() -> None:
    network = Network.parse(_read("valid/network-hostdev-dumpxml.xml"))
    assert network.connections == 2
    assert network.forward is not None
    assert network.forward.pf == "enp5s0f0"
    assert [a.bdf for a in network.forward.addresses][:2] == ["0000:05:10.0", "0000:05:10.2"]
    assert len(network.forward.addresses) == 6
    built = Network("vf-pool", Forward("hostdev", True, "enp5s0f0"))
    assert built.to_xml() == (
        "<network>\n  <name>vf-pool</name>\n"
        '  <forward mode="hostdev" managed="yes">\n    <pf dev="enp5s0f0"/>\n  </forward>\n'
        "</network>\n"
    )


def test_golden_nodedevs() -> None:
    pf = NodeDevice.parse(_read("valid/nodedev-pci_0000_05_00_0-pf.xml"))
    assert pf == NodeDevice(
        name="pci_0000_05_00_0",
        parent="pci_0000_00_1c_0",
        driver="igb",
        capability=PciCapability(
            PciAddress(0, 5, 0, 0),
            PciId("0x10c9", "82576 Gigabit Network Connection"),
            PciId("0x8086", "Intel Corporation"),
            "0x020000",
            virt_functions=VirtFunctions((PciAddress(0, 5, 0x10, 0), PciAddress(0, 5, 0x10, 2)), 7),
            iommu_group=IommuGroup(12, (PciAddress(0, 5, 0, 0), PciAddress(0, 5, 0, 1))),
        ),
    )
    vf = NodeDevice.parse(_read("valid/nodedev-pci_0000_05_10_0-vf.xml"))
    assert vf.capability.phys_function == pf.capability.address
    assert pf.capability.virt_functions is not None
    assert vf.capability.address in pf.capability.virt_functions.addresses
    assert pf.name == pf.capability.address.nodedev_name


def test_golden_domain_carries_every_device_kind() -> None:
    domain = Domain.parse(_read("valid/domain-sriov-guest.xml"))
    assert domain.name == "sriov-guest <lab>"
    assert [type(d) for d in domain.devices] == [PciHostdev, HostdevInterface, NetworkInterface]
    assert Domain.parse(domain.to_xml()) == domain


# --- errors ---------------------------------------------------------------------------------------


def test_malformed_error_names_line_and_element() -> None:
    with pytest.raises(MalformedXmlError) as caught:
        parse_any(_read("malformed/interface-unclosed-mac.xml"))
    assert caught.value.line == 6
    assert caught.value.element == "mac"
    assert str(caught.value).startswith("line 6: <mac>: malformed XML")


@pytest.mark.parametrize(
    ("build", "element", "needle"),
    [
        (lambda: PciAddress(0x10000, 0, 0, 0), "address", "domain"),
        (lambda: PciAddress(0, 0x100, 0, 0), "address", "bus"),
        (lambda: PciAddress(0, 0, 0x20, 0), "address", "slot"),
        (lambda: PciAddress(0, 0, 0, 8), "address", "function"),
        (lambda: HostdevInterface(PciAddress(0, 0, 0, 0), mac="03:00:00:00:00:00"), "mac", "multicast"),
        (lambda: HostdevInterface(PciAddress(0, 0, 0, 0), mac="52-54-00-00-00-01"), "mac", "52-54"),
        (lambda: Forward("hostdevs"), "forward", "hostdevs"),
        (lambda: Forward("hostdev", addresses=(PciAddress(0, 1, 0, 0),) * 2), "address", "0000:01:00.0"),
        (lambda: Vlan((VlanTag(1, "untagged"), VlanTag(2, "tagged")), trunk=True), "vlan", "native"),
        (lambda: VlanTag(4096), "tag", "4096"),
        (lambda: VirtualPort8021Qbh("x" * 40), "parameters", "profileid"),
        (lambda: VirtualPort8021Qbg(1, 2, 3, "not-a-uuid"), "parameters", "instanceid"),
    ],
)
def test_constructor_errors_name_the_problem(build: Any, element: str, needle: str) -> None:
    with pytest.raises(XmlModelError) as caught:
        build()
    assert caught.value.element == element
    assert needle in str(caught.value)


def test_hostdev_refuses_interface_children_with_line() -> None:
    with pytest.raises(XmlModelError) as caught:
        parse_any(_read("invalid/hostdev-with-vlan.xml"))
    assert str(caught.value).startswith("line 5: <hostdev> <vlan>:")


# --- profiles -------------------------------------------------------------------------------------


def test_profiles_registered_and_ci_deterministic() -> None:
    register_profiles()
    register_profiles()  # idempotent
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.deadline is None and ci.print_blob
    assert ci.max_examples <= 100
    assert {"dev", "ci", "nightly"} <= set(PROFILES)
    assert settings.get_profile("nightly").max_examples > ci.max_examples


# --- the properties catch a broken model ----------------------------------------------------------


def test_round_trip_property_catches_a_serializer_that_drops_the_vlan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_to_element = HostdevInterface.to_element

    def drops_vlan(self: HostdevInterface) -> etree._Element:
        element = real_to_element(self)
        for vlan in element.findall("vlan"):
            element.remove(vlan)
        return element

    monkeypatch.setattr(HostdevInterface, "to_element", drops_vlan)
    failures: list[HostdevInterface] = []

    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(hs.hostdev_interfaces())
    def round_trip(interface: HostdevInterface) -> None:
        if HostdevInterface.parse(interface.to_xml()) != interface:
            failures.append(interface)
            raise AssertionError("model round trip lost data")

    with pytest.raises(AssertionError, match="lost data"):
        round_trip()
    shrunk = failures[-1]  # hypothesis replays the minimal example last
    assert shrunk.vlan == Vlan((VlanTag(0),))
    assert (shrunk.mac, shrunk.virtualport, shrunk.managed, shrunk.driver) == (None, None, None, None)
    assert shrunk.source == PciAddress(0, 0, 0, 0)


def test_shipped_round_trip_suite_catches_a_serializer_that_drops_the_vlan_trunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """suites/test_xml_roundtrip.py runs in `make test`; this shows it fails on a trunk regression."""
    from suites import test_xml_roundtrip as shipped

    real_to_element = Vlan.to_element

    def drops_trunk(self: Vlan) -> etree._Element:
        element = real_to_element(self)
        if "trunk" in element.attrib:
            del element.attrib["trunk"]
        return element

    # The suite's own test body, under fixed settings (no deadline on a loaded machine, same examples).
    body = shipped.test_hostdev_interface_model_round_trip_is_identity.hypothesis.inner_test  # type: ignore[attr-defined]
    suite_test = settings(max_examples=100, derandomize=True, database=None, deadline=None)(
        given(hs.hostdev_interfaces())(body)
    )
    monkeypatch.setattr(Vlan, "to_element", drops_trunk)
    with pytest.raises(AssertionError):
        suite_test()
    monkeypatch.undo()
    suite_test()  # and passes on the real serializer


def test_make_test_runs_the_shipped_xml_suites() -> None:
    makefile = (CORPUS.parent.parent / "Makefile").read_text()
    suites_line = next(line for line in makefile.splitlines() if line.startswith("XML_SUITES :="))
    assert "suites/test_xml_roundtrip.py" in suites_line and "suites/test_xml_corpus.py" in suites_line
    for target in ("test:", "test-fast:"):
        recipe = makefile.split(f"\n{target}", 1)[1].split("\n\n", 1)[0]
        assert "$(XML_SUITES)" in recipe, f"make {target[:-1]} does not run the XML suites: {recipe}"


def test_each_document_goes_to_its_own_schema_and_define_call() -> None:
    assert document_kind(parse_any("<network><name>n</name></network>")) == "network"
    assert document_kind(parse_any(_read("valid/nodedev-pci_0000_00_14_0.xml"))) == "nodedev"
    assert document_kind(wrap_devices("g")) == "domain"


def test_a_document_no_model_reads_is_named_with_its_line() -> None:
    with pytest.raises(XmlModelError) as caught:
        parse_any("\n<pool type='dir'>\n  <name>p</name>\n</pool>")
    assert str(caught.value) == "line 2: <pool>: not a document the harness models"
    assert caught.value.args == ("not a document the harness models",)


def test_malformed_xml_without_an_element_in_the_message_names_the_line() -> None:
    with pytest.raises(MalformedXmlError) as caught:
        parse_any("<domain>\n&bogus;</domain>")
    assert str(caught.value) == "line 2: <?>: malformed XML: Entity 'bogus' not defined"
    assert (caught.value.element, caught.value.line) == ("?", 2)


def test_wrapped_devices_are_the_domains_devices() -> None:
    device = parse_any(
        "<hostdev mode='subsystem' type='pci'><source>"
        "<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>"
    )
    assert not isinstance(device, Domain | Network | NodeDevice | NonPciNodeDevice)
    assert wrap_devices("g", device).devices == (device,)


# --- what a person reads when a model refuses a value -------------------------------------------------

_GROUP_MEMBER = PciAddress(0, 1, 0, 0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            # was PciId("0x12"), refused wrongly: libvirt reads ids in base 16 and takes it
            lambda: PciId("0x10c9h"),
            "<product> id='0x10c9h': id must be a hex number like 0x10c9 (libvirt reads it in base 16, "
            "at most 0xffffffff)",
            id="product id",
        ),
        pytest.param(
            lambda: IommuGroup(-1, (_GROUP_MEMBER,)),
            "<iommuGroup> number=-1: must be 0 or more",
            id="group number",
        ),
        pytest.param(
            lambda: IommuGroup(3, ()),
            "<iommuGroup> <address>: a group has at least one member",
            id="group empty",
        ),
        pytest.param(
            # was pci_class="0x02", refused wrongly: libvirt reads the class in base 16 and takes it
            lambda: PciCapability(_GROUP_MEMBER, PciId("0x10c9"), PciId("0x8086"), pci_class="0x1000000"),
            "<class> value '0x1000000': must be a hex number like 0x020000 (libvirt reads it in base 16), "
            "at most 0xffffff",
            id="class",
        ),
        pytest.param(
            lambda: NodeDevice(
                name="", capability=PciCapability(_GROUP_MEMBER, PciId("0x10c9"), PciId("0x8086"))
            ),
            "<name> value '': empty device name",
            id="nodedev name",
        ),
        pytest.param(
            lambda: PciAddress.from_nodedev_name("pci_1"),
            "<name> value 'pci_1': not a libvirt PCI nodedev name like pci_0000_01_00_0",
            id="nodedev name bad",
        ),
        pytest.param(
            lambda: KernelBoot("vmlinuz"), "<kernel> value 'vmlinuz': must be an absolute path", id="kernel"
        ),
        pytest.param(
            lambda: SerialLog("console.log"),
            "<serial> path='console.log': must be an absolute path",
            id="serial",
        ),
        pytest.param(
            lambda: PciController(1, "pci-root-x"),
            "<controller> model='pci-root-x': expected one of pci-root, pcie-root, pci-bridge, pcie-root-port, pcie-to-pci-bridge, dmi-to-pci-bridge, pcie-switch-upstream-port, pcie-switch-downstream-port, pci-expander-bus, pcie-expander-bus",
            id="controller",
        ),
        pytest.param(lambda: Forward("hostdev", pf=""), "<pf> dev='': empty device name", id="pf"),
        pytest.param(lambda: Network(name="n", uuid="nope"), "<uuid> value 'nope': not a UUID", id="uuid"),
        pytest.param(
            lambda: Network.parse("<network>\n<forward mode='hostdev'/></network>"),
            "line 1: <network>: missing <name>",
            id="net noname",
        ),
        pytest.param(
            lambda: Network.parse(
                "<network><name>n</name><forward mode='hostdev'/>\n<bridge name='br0'/></network>"
            ),
            "line 2: <bridge> name='br0': bridge name not allowed in hostdev mode",
            id="net bridge",
        ),
        pytest.param(
            lambda: Network.parse(
                "<network><name>n</name><forward mode='hostdev'>\n<address domain='0' bus='1' slot='0' function='1'/></forward></network>"
            ),
            "line 2: <address> type: missing address type: a VF in <forward> needs type='pci'",
            id="fwd addr type",
        ),
        pytest.param(
            lambda: Network.parse(
                "<network><name>n</name>\n<forward mode='hostdev' dev='eth0'><pf dev='eth0'/></forward></network>"
            ),
            "line 2: <forward> dev='eth0': the 'dev' attribute cannot be used when <address> or <pf> sub-elements are present",
            id="fwd dev",
        ),
        pytest.param(
            lambda: NodeDevice.parse(
                "<device><name>pci_0000_01_00_0</name>\n<capability type='pci'><domain>0</domain></capability></device>"
            ),
            "line 2: <capability> <bus>: missing",
            id="cap missing bus",
        ),
        pytest.param(
            lambda: NodeDevice.parse(
                "<device><name>pci_0000_01_00_0</name>\n<capability type='pci'><domain>0</domain><bus>1</bus><slot>0</slot><function>0</function><vendor id='0x8086'/></capability></device>"
            ),
            "line 2: <capability> <product>: missing",
            id="cap missing product",
        ),
        pytest.param(
            lambda: NetworkInterface.parse("<interface type='bridge'>\n<source network='pool'/></interface>"),
            "line 1: <interface> type='bridge': expected type='network' with <source network=...>",
            id="pool-interface-of-another-type",
        ),
        pytest.param(
            lambda: PciHostdev.parse(
                "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='1' slot='0' "
                "function='0'/></source>\n<address type='drive' controller='0' bus='0' target='0' unit='0'/></hostdev>"
            ),
            "line 2: <address> type='drive': PCI host devices must use 'pci' or 'unassigned' address type",
            id="hostdev-guest-address-of-another-type",
        ),
    ],
)
def test_model_errors_name_element_attribute_value_and_line(build: Any, message: str) -> None:
    """The whole message is pinned: the element, the attribute or value at fault, the line, the problem."""
    with pytest.raises(XmlModelError) as caught:
        build()
    assert str(caught.value) == message


_HOSTDEV = "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='{bus}' slot='0' function='0'/></source>{extra}</hostdev>"


def _domain_with(devices: list[str], os_extra: str = "") -> str:
    return (
        f"<domain type='qemu'><name>g</name><memory>131072</memory><os><type>hvm</type>{os_extra}</os>\n<devices>\n"
        + "\n".join(devices)
        + "\n</devices></domain>"
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        pytest.param(
            _domain_with([_HOSTDEV.format(bus=1, extra="<boot order='1'/>")], "<boot dev='hd'/>"),
            "line 3: <boot> order='1': per-device boot elements cannot be used together with os/boot elements",
            id="device-boot-and-os-boot",
        ),
        pytest.param(
            # An alias libvirt ignores comes first: the check goes on past it to the repeated user alias.
            _domain_with(
                [
                    _HOSTDEV.format(bus=1, extra="<alias name='hostdev0'/>"),
                    _HOSTDEV.format(bus=2, extra="<alias name='ua-nic'/>"),
                    _HOSTDEV.format(bus=3, extra="<alias name='ua-nic'/>"),
                ]
            ),
            "line 5: <alias> name='ua-nic': non unique alias detected: ua-nic",
            id="user-alias-twice",
        ),
    ],
)
def test_domain_refusals_libvirt_makes_name_the_line(xml: str, message: str) -> None:
    with pytest.raises(XmlModelError) as caught:
        Domain.parse(xml)
    assert str(caught.value) == message


def _canonical(text: str) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True)
    return etree.tostring(etree.fromstring(text.encode(), parser), method="c14n")


@pytest.mark.parametrize("path", sorted((CORPUS / "valid").glob("*.xml")), ids=lambda p: p.name)
def test_valid_corpus_documents_come_back_exactly(path: Path) -> None:
    """Parse and write again with no change: the same document, element for element (nothing doubled,
    dropped or renamed), as libvirt's own dumpxml output must survive a harness that only reads it."""
    text = path.read_text()
    written = parse_any(text).to_xml()
    assert _canonical(written) == _canonical(text), f"{path.name} came back as:\n{written}"


# --- issue 18: what libvirt's parser takes, the models take and write back unchanged ----------------

_SOURCE = "<source><address domain='0' bus='1' slot='0' function='0'/></source>"
_IFACE_SOURCE = "<source><address type='pci' domain='0' bus='2' slot='0' function='0'/></source>"


@pytest.mark.parametrize(
    "xml",
    [
        f"<hostdev mode='subsystem' type='pci'><driver model='vfio-pci-igb'/>{_SOURCE}</hostdev>",
        f"<hostdev mode='subsystem' type='pci'><driver name='vfio' model='mlx5_vfio_pci'/>{_SOURCE}</hostdev>",
        f"<interface type='hostdev'><driver queues='4'/>{_IFACE_SOURCE}</interface>",
        f"<interface type='hostdev'><driver txmode='timer' queues='2'/>{_IFACE_SOURCE}</interface>",
    ],
)
def test_driver_without_or_beside_name_is_kept_on_write(xml: str) -> None:
    device = parse_any(xml)
    assert isinstance(device, PciHostdev | HostdevInterface)
    changed = dataclasses.replace(device, managed=True)
    written = etree.tostring(changed.to_element(), method="c14n")
    expected = etree.fromstring(xml)
    expected.set("managed", "yes")
    assert written == etree.tostring(expected, method="c14n"), written


@pytest.mark.parametrize("text", ["0x0FFE", "0X0ffe", "0FFE", "ffe", " +0x0ffe", "0x00000ffe"])
def test_pci_ids_in_every_notation_libvirt_reads(text: str) -> None:
    xml = (
        "<device><name>pci_0000_05_00_0</name><capability type='pci'><domain>0</domain><bus>+5</bus>"
        f"<slot> 0</slot><function>00</function><product id='{text}'/><vendor id='0x8086'/>"
        "<iommuGroup number='010'><address domain='0' bus='5' slot='0' function='0'/></iommuGroup>"
        "</capability></device>"
    )
    device = NodeDevice.parse(xml)
    assert int(device.capability.product.id.strip().lstrip("+"), 16) == 0xFFE
    assert device.capability.address.bus == 5
    assert device.capability.iommu_group is not None and device.capability.iommu_group.number == 10
    assert etree.tostring(device.to_element(), method="c14n") == etree.tostring(
        etree.fromstring(xml), method="c14n"
    )


@pytest.mark.parametrize(("written", "order"), [("010", 10), ("+5", 5), (" 7", 7)])
def test_boot_order_is_base_10_and_kept_as_written(written: str, order: int) -> None:
    xml = f"<hostdev mode='subsystem' type='pci'>{_SOURCE}<boot order='{written}'/></hostdev>"
    hostdev = PciHostdev.parse(xml)
    assert hostdev.boot_order == order
    assert etree.tostring(hostdev.to_element(), method="c14n") == etree.tostring(
        etree.fromstring(xml), method="c14n"
    )


@pytest.mark.parametrize(
    ("capability", "kind"),
    [
        ("<capability type='net'><interface>eth0</interface><capability type='80203'/></capability>", "net"),
        ("<capability type='scsi_host'><host>0</host></capability>", "scsi_host"),
        (
            "<capability type='usb_device'><bus>1</bus><device>2</device><product id='0x0FFE'/>"
            "<vendor id='0x1d6b'/></capability>",
            "usb_device",
        ),
    ],
)
def test_non_pci_node_devices_are_read_not_refused(capability: str, kind: str) -> None:
    xml = f"<device><name>{kind}_x</name><parent>computer</parent>{capability}</device>"
    device = parse_any(xml)
    assert type(device).__name__ == "NonPciNodeDevice" and getattr(device, "name", None) == f"{kind}_x"
    assert etree.tostring(device.to_element(), method="c14n") == etree.tostring(
        etree.fromstring(xml), method="c14n"
    )
    with pytest.raises(XmlModelError) as caught:
        NodeDevice.parse(xml)
    assert "not a PCI device" in str(caught.value) and f"'{kind}'" in str(caught.value)
