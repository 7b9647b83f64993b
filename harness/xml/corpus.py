"""Reading any of the modelled documents by its root element, and wrapping lone devices in a domain."""

from __future__ import annotations

from typing import Literal

from lxml import etree

from harness.xml.base import Element, line_of, parse_document, refuse_unknown_content
from harness.xml.domain import Device, Domain, device_from_element
from harness.xml.errors import XmlModelError
from harness.xml.network import Network
from harness.xml.nodedev import NodeDevice, NonPciNodeDevice, node_device_from_element

__all__ = ["Document", "document_kind", "parse_any", "wrap_device_element", "wrap_devices"]

Document = Domain | Network | NodeDevice | NonPciNodeDevice | Device
DocumentKind = Literal["domain", "network", "nodedev"]


def parse_any(text: str | bytes, *, strict: bool = False) -> Document:
    """The model for a domain, network, nodedev, ``<hostdev>`` or ``<interface>`` document.

    ``strict`` refuses content no model reads, naming each piece by its XPath.
    """
    root = parse_document(text)
    document: Document | None
    if root.tag == "domain":
        document = Domain.from_element(root)
    elif root.tag == "network":
        document = Network.from_element(root)
    elif root.tag == "device":
        document = node_device_from_element(root)
    else:
        document = device_from_element(root)
    if document is None:
        raise XmlModelError(str(root.tag), "not a document the harness models", line=line_of(root))
    if strict:
        refuse_unknown_content(document)
    return document


def document_kind(document: Document) -> DocumentKind:
    """Which libvirt schema (and define call) a document belongs to; devices go inside a domain."""
    if isinstance(document, Network):
        return "network"
    if isinstance(document, NodeDevice | NonPciNodeDevice):
        return "nodedev"
    return "domain"


def wrap_devices(name: str, *devices: Device) -> Domain:
    return Domain(name=name, memory_kib=262144, devices=devices)


def wrap_device_element(name: str, device: Element) -> Element:
    """A minimal domain around a raw device element, for documents the models refuse."""
    domain = wrap_devices(name).to_element()
    devices = domain.find("devices")
    assert devices is not None
    devices.append(etree.fromstring(etree.tostring(device)))
    return domain
