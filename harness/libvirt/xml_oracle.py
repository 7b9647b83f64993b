"""The libvirt oracle for the XML models: libvirt's own parser and formatter (``test:///``, no daemon).

The models in ``harness/xml`` know XML only; this module is where they meet libvirt.

``define_*`` return libvirt's XML re-read into a model; ``rejection_*`` return libvirt's error
message for a document it refuses, or None when it takes it (and undefines it again).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import libvirt
from lxml import etree

from harness.errors import HarnessInputError
from harness.libvirt.connection import ignore_libvirt_error
from harness.xml.base import parse_document
from harness.xml.domain import Domain
from harness.xml.network import Network
from harness.xml.nodedev import AnyNodeDevice, NodeDevice, NonPciNodeDevice, node_device_from_element

__all__ = [
    "TEST_URI",
    "LibvirtRoundTripError",
    "define_domain",
    "define_network",
    "dump_nodedev",
    "open_test_connection",
    "rejection_of_domain_xml",
    "rejection_of_network_xml",
    "silence_libvirt",
]

TEST_URI = "test:///default"
_D = TypeVar("_D", NodeDevice, NonPciNodeDevice)


class LibvirtRoundTripError(HarnessInputError):
    """libvirt refused a document the models built; the message is libvirt's."""


def silence_libvirt() -> None:
    """libvirt prints every error to stderr unless a handler is registered; errors still raise."""
    libvirt.registerErrorHandler(ignore_libvirt_error, None)


def open_test_connection(uri: str = TEST_URI) -> Any:
    silence_libvirt()
    return libvirt.open(uri)


def _rejection(define: Any, xml: str, flags: int) -> str | None:
    try:
        defined = define(xml, flags)
    except libvirt.libvirtError as error:
        return str(error.get_error_message())
    defined.undefine()
    return None


def _read_back(define: Any, xml: str, flags: int) -> str:
    """Define, read back with XMLDesc, undefine: libvirt's own formatting of ``xml``."""
    try:
        defined = define(xml, flags)
    except libvirt.libvirtError as error:
        raise LibvirtRoundTripError(str(error.get_error_message())) from None
    try:
        return str(defined.XMLDesc(0))
    finally:
        defined.undefine()


def rejection_of_domain_xml(conn: Any, xml: str, *, validate: bool = True) -> str | None:
    """libvirt's message if it refuses ``xml``; ``validate`` asks it to check domain.rng too."""
    return _rejection(conn.defineXMLFlags, xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE if validate else 0)


def rejection_of_network_xml(conn: Any, xml: str, *, validate: bool = True) -> str | None:
    return _rejection(conn.networkDefineXMLFlags, xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE if validate else 0)


def define_domain(conn: Any, domain: Domain) -> tuple[str, Domain]:
    """Define, read back with XMLDesc, undefine; return libvirt's text and its model."""
    text = _read_back(conn.defineXMLFlags, domain.to_xml(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    return text, Domain.parse(text)


def define_network(conn: Any, network: Network) -> tuple[str, Network]:
    text = _read_back(conn.networkDefineXMLFlags, network.to_xml(), libvirt.VIR_NETWORK_DEFINE_VALIDATE)
    return text, Network.parse(text)


@contextmanager
def _node_file(devices: list[AnyNodeDevice]) -> Iterator[Path]:
    node = etree.Element("node")
    for device in devices:
        node.append(device.to_element())
    with tempfile.TemporaryDirectory(prefix="hostdev-nodedev-") as directory:
        path = Path(directory) / "node.xml"
        path.write_bytes(etree.tostring(node))
        yield path


def dump_nodedev(device: _D) -> tuple[str, _D]:
    """Load ``device`` into a private test driver (its custom-node file) and nodedev-dumpxml it.

    The test driver has no nodedev-create for PCI devices; a ``test:///path`` node file is the
    one way to put a PCI device (or a net, USB or SCSI one) through libvirt's nodedev parser
    without hardware. The answer is read with the model class of ``device``.
    """
    silence_libvirt()
    with _node_file([device]) as path:
        try:
            conn = libvirt.open(f"test://{path}")
        except libvirt.libvirtError as error:
            raise LibvirtRoundTripError(str(error.get_error_message())) from None
        try:
            text = str(conn.nodeDeviceLookupByName(device.name).XMLDesc(0))
        except libvirt.libvirtError as error:
            raise LibvirtRoundTripError(str(error.get_error_message())) from None
        finally:
            conn.close()
    returned = node_device_from_element(parse_document(text))
    if not isinstance(returned, type(device)):
        raise LibvirtRoundTripError(f"libvirt returned another kind of node device for {device.name}")
    return text, returned
