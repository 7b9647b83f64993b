"""Properties of the XML models against libvirt's own parser (test:/// driver) and RelaxNG schemas.

Runs without libvirtd: ``test:///default`` parses and formats in-process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from harness import strategies as hs
from harness.hypothesis_profiles import register_profiles
from harness.xml import (
    Domain,
    HostdevInterface,
    Network,
    NodeDevice,
    PciHostdev,
    XmlModelError,
)
from harness.xml.address import PCI_LIMITS
from harness.xml.libvirt_roundtrip import (
    define_domain,
    define_network,
    dump_nodedev,
    open_test_connection,
    rejection_of_domain_xml,
    rejection_of_network_xml,
)
from harness.xml.network import FORWARD_MODES
from harness.xml.normalize import expected_domain, expected_network, expected_nodedev
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
    domain = Domain(name=name, memory_kib=4096, devices=(
        PciHostdev(hs_address(), rom=None),
    ))
    _xml, returned_domain = define_domain(conn, domain)
    assert returned_domain.name == name

    _xml, returned_network = define_network(conn, Network(network_name))
    assert returned_network.name == network_name

    device = NodeDevice.parse(_nodedev_with_product(text))
    _xml, returned_device = dump_nodedev(device)
    assert returned_device.capability.product.name == text
    assert returned_device.capability.vendor.name == text


def hs_address() -> Any:
    from harness.xml import PciAddress

    return PciAddress(0, 1, 0, 0)


def _nodedev_with_product(text: str) -> str:
    device = etree.fromstring(
        "<device><name>pci_0000_01_00_0</name><capability type='pci'><domain>0</domain><bus>1</bus>"
        "<slot>0</slot><function>0</function><product id='0x10c9'/><vendor id='0x8086'/></capability>"
        "</device>"
    )
    for tag in ("product", "vendor"):
        element = device.find(f"capability/{tag}")
        assert element is not None
        element.text = text
    return etree.tostring(device, encoding="unicode")


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
    assert schema_errors("nodedev", device.to_element()) == []
