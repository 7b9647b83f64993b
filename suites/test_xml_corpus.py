"""The regression corpus in fixtures/xml: the RHEL guide's shapes, malformed figures and refusals."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

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
    Domain,
    MalformedXmlError,
    Network,
    NetworkInterface,
    NodeDevice,
    NonPciNodeDevice,
    PciHostdev,
    XmlModelError,
    unknown_content,
)
from harness.xml.base import parse_document, to_xml_string
from harness.xml.corpus import Document, document_kind, parse_any, wrap_device_element, wrap_devices
from harness.xml.normalize import expected_domain, expected_network, expected_nodedev
from harness.xml.schema import SchemaMissingError, load_schema, schema_errors

register_profiles()
MALFORMED_DOMAIN = (
    "<domain type='test'><name>malformed</name><memory>65536</memory><os><type>hvm</type></os><devices>\n"
    "{devices}</devices></domain>"
)

# fixtures/xml, through a link that the wheel turns into a copy inside the installed suites.
CORPUS = Path(__file__).resolve().parent / "xml-corpus"
VALID = sorted((CORPUS / "valid").glob("*.xml"))
# A valid/NAME.expect.json with "schema_refuses": libvirt's parser takes the file, its RelaxNG does not.
MALFORMED = sorted((CORPUS / "malformed").glob("*.xml"))
INVALID = sorted((CORPUS / "invalid").glob("*.xml"))


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def _expectation(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.with_suffix(".expect.json").read_text())
    return data


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    connection = open_test_connection()
    yield connection
    connection.close()


def test_corpus_is_present() -> None:
    assert len(VALID) >= 10 and len(MALFORMED) >= 2 and len(INVALID) >= 4, CORPUS


def _libvirt_round_trip(conn: Any, document: Document, name: str) -> None:
    if isinstance(document, Network):
        _text, returned_network = define_network(conn, document)
        assert returned_network == expected_network(document, returned_network)
    elif isinstance(document, NodeDevice):
        _text, returned_device = dump_nodedev(document)
        assert returned_device == expected_nodedev(document)
    elif isinstance(document, NonPciNodeDevice):
        _text, returned_other = dump_nodedev(document)
        assert returned_other == expected_nodedev(document)
    else:
        domain = document if isinstance(document, Domain) else wrap_devices(f"corpus-{name}", document)
        _text, returned_domain = define_domain(conn, domain)
        assert returned_domain == expected_domain(domain, returned_domain)


def _as_schema_document(document: Document, name: str) -> etree._Element:
    if isinstance(document, Domain | Network | NodeDevice | NonPciNodeDevice):
        return document.to_element()
    return wrap_devices(f"corpus-{name}", document).to_element()


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_document_round_trips_through_model(path: Path) -> None:
    document = parse_any(path.read_text())
    rebuilt = to_xml_string(document.to_element())
    assert parse_any(rebuilt) == document


def _canonical(element: etree._Element) -> bytes:
    # Reparsed so that both sides went through the same serializer; C14N fixes attribute order.
    return etree.tostring(etree.fromstring(etree.tostring(element)), method="c14n")


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_document_is_written_back_unchanged(path: Path) -> None:
    original = parse_document(path.read_text())
    written = parse_any(path.read_text()).to_element()
    assert _canonical(written) == _canonical(original), to_xml_string(written)


def _edit(document: Document) -> tuple[Document, Callable[[etree._Element], None]]:
    """One modelled field changed through the model, and the same change made by hand in lxml."""
    if isinstance(document, Domain | Network | NodeDevice | NonPciNodeDevice):
        new_name = document.name + "-edited"

        def rename(root: etree._Element) -> None:
            _first_child(root, "name").text = new_name

        return dataclasses.replace(document, name=new_name), rename
    if isinstance(document, NetworkInterface):
        network = "edited-pool"

        def repoint(root: etree._Element) -> None:
            _first_child(root, "source").set("network", network)

        return dataclasses.replace(document, network=network), repoint
    managed = not document.managed

    def toggle(root: etree._Element) -> None:
        root.set("managed", "yes" if managed else "no")

    if isinstance(document, PciHostdev):
        return dataclasses.replace(document, managed=managed), toggle
    return dataclasses.replace(document, managed=managed), toggle


def _first_child(root: etree._Element, tag: str) -> etree._Element:
    found = root.find(tag)
    assert found is not None, tag
    return found


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_read_modify_write_changes_only_the_modelled_field(path: Path) -> None:
    document = parse_any(path.read_text())
    edited, same_by_hand = _edit(document)
    expected = parse_document(path.read_text())
    same_by_hand(expected)
    assert _canonical(edited.to_element()) == _canonical(expected), edited.to_xml()


@pytest.mark.parametrize(
    ("name", "unknown"),
    [
        ("domain-unknown-content", "/domain/devices/interface/teaming"),
        ("network-hostdev-unknown-content", "/network/portgroup"),
        ("network-hostdev-interface-pool", "/network/forward/interface[1]"),
        ("nodedev-pci_0000_08_00_200-ari", "/device/capability/pci-express"),
    ],
)
def test_strict_parsing_names_unknown_content(name: str, unknown: str) -> None:
    text = (CORPUS / "valid" / f"{name}.xml").read_text()
    assert unknown in unknown_content(parse_any(text))
    with pytest.raises(XmlModelError) as caught:
        parse_any(text, strict=True)
    assert unknown in str(caught.value), str(caught.value)
    assert caught.value.line is not None, str(caught.value)


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_document_validates_against_libvirt_schema(path: Path) -> None:
    document = parse_any(path.read_text())
    kind = document_kind(document)
    try:
        load_schema(kind)
    except SchemaMissingError as error:
        pytest.skip(str(error))
    # The file as written, not only as rebuilt: the corpus is what a person would hand to virsh.
    original = parse_document(path.read_text())
    if kind == "domain" and original.tag != "domain":
        original = wrap_device_element(f"corpus-{path.stem}", original)
    sidecar = path.with_suffix(".expect.json")
    if sidecar.exists() and _expectation(path).get("schema_refuses"):
        # Still checked: the schema must really refuse it (else drop the sidecar), libvirt's parser
        # takes it (test_valid_document_survives_libvirt).
        assert schema_errors(kind, original) != [], f"{path.name}: the schema takes it now"
        return
    assert schema_errors(kind, original) == []
    assert schema_errors(kind, _as_schema_document(document, path.stem)) == []


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_document_survives_libvirt(conn: Any, path: Path) -> None:
    _libvirt_round_trip(conn, parse_any(path.read_text()), path.stem)


@pytest.mark.parametrize("path", MALFORMED, ids=_ids(MALFORMED))
def test_malformed_document_is_reported_with_line_and_element(path: Path) -> None:
    expected = _expectation(path)
    with pytest.raises(MalformedXmlError) as caught:
        parse_any(path.read_text())
    error = caught.value
    assert (error.line, error.element) == (expected["line"], expected["element"]), str(error)
    assert f"line {expected['line']}" in str(error) and f"<{expected['element']}>" in str(error)


@pytest.mark.parametrize("path", MALFORMED, ids=_ids(MALFORMED))
def test_malformed_document_is_refused_by_libvirt_too(conn: Any, path: Path) -> None:
    expected = _expectation(path)
    text, offset = path.read_text(), 0
    if not text.lstrip().startswith("<domain"):
        # A device element cannot be parsed to wrap it: put its text inside a domain, one line down.
        text, offset = MALFORMED_DOMAIN.format(devices=text), 1
    message = rejection_of_domain_xml(conn, text, validate=False)
    # libxml2's reason names the element left open and the line it opened on.
    reason = f"mismatch: {expected['element']} line {expected['line'] + offset}"
    assert message is not None and reason in message, (
        f"libvirt should refuse {path.name} with {reason!r}: {message}"
    )


@pytest.mark.parametrize("path", MALFORMED, ids=_ids(MALFORMED))
def test_corrected_version_round_trips(conn: Any, path: Path) -> None:
    corrected = CORPUS / _expectation(path)["corrected"]
    document = parse_any(corrected.read_text())
    assert parse_any(to_xml_string(document.to_element())) == document
    _libvirt_round_trip(conn, document, corrected.stem)


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_document_is_refused_by_models_naming_the_problem(path: Path) -> None:
    expected = _expectation(path)
    with pytest.raises(XmlModelError) as caught:
        parse_any(path.read_text())
    error = caught.value
    assert error.element == expected["element"], str(error)
    assert expected["needle"] in str(error), str(error)
    assert error.line == expected["line"], str(error)
    assert str(error).startswith(f"line {expected['line']}: <{expected['element']}>"), str(error)


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_document_is_refused_by_libvirt(conn: Any, path: Path) -> None:
    expected = _expectation(path)
    root = parse_document(path.read_text())
    if root.tag == "network":
        xml = etree.tostring(root, encoding="unicode")
        message = rejection_of_network_xml(conn, xml, validate=expected["libvirt_validate"])
    else:
        if root.tag != "domain":
            root = wrap_device_element(f"invalid-{path.stem}", root)
        xml = etree.tostring(root, encoding="unicode")
        message = rejection_of_domain_xml(conn, xml, validate=expected["libvirt_validate"])
    assert message is not None, f"libvirt accepted {path.name}"
    if "libvirt_needle" in expected:  # the model mirrors this libvirt check: same meaning, same case
        assert expected["libvirt_needle"] in message, (path.name, message)
    else:  # why libvirt refused: its schema, or its parser naming the value as our models do
        reason = "failed to validate against schema" if expected["libvirt_validate"] else expected["needle"]
        assert reason in message, f"libvirt should refuse {path.name} for {reason!r}: {message}"
