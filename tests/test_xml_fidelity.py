"""Round-trip fidelity: content the models do not read survives parse → change one field → write.

Documents are generated valid by the strategies, then unknown attributes and unknown child elements
are put at random places at every level; after a read-modify-write each one must still be there,
under the same ancestors and in the same order among its siblings, the change must have taken
effect, and strict mode must name exactly what was added.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from harness import strategies as hs
from harness.hypothesis_profiles import register_profiles
from harness.xml import (
    Domain,
    HostdevInterface,
    Network,
    NodeDevice,
    NonPciNodeDevice,
    PciHostdev,
    XmlModelError,
    unknown_content,
)
from harness.xml.corpus import Document, parse_any
from harness.xml.hostdev import HostdevDriver

register_profiles()

# Without --hypothesis-profile the default 200 ms deadline turns a loaded machine into failures.
_NO_DEADLINE = settings(deadline=None)

_FOREIGN_NS = "urn:x-hostdev-harness:unknown"
# Tags no model reads at any level, one of them namespaced like a user's <metadata> content.
_UNKNOWN_TAGS = ("alias", "harness-extra", f"{{{_FOREIGN_NS}}}extra")
_MARK = "harness-mark"

Element = etree._Element


@dataclasses.dataclass(frozen=True)
class Injected:
    """A generated document's text, and the paths (in that text's tree) of what was added.

    ``unread`` is what the document held that no model reads before anything was added: a
    ``<driver model=...>`` without ``name=``, what a net or USB node device's capability holds.
    """

    text: bytes
    paths: frozenset[str]
    unread: frozenset[str] = frozenset()


def _built_documents() -> st.SearchStrategy[Document]:
    """Models built from scratch: everything in them is modelled."""
    return st.one_of(
        hs.domains(),
        hs.networks(hs.forwards()),
        hs.node_devices(),
        hs.pci_hostdevs(),
        hs.hostdev_interfaces(),
    )


def _documents() -> st.SearchStrategy[Document]:
    """Those, and parsed documents in the shapes of libvirt's own test data that the models read only
    in part: a <driver> with model=/queues= and no name=, a node device that is not a PCI device."""
    return st.one_of(_built_documents(), hs.hostdevs_with_driver_attributes(), hs.non_pci_node_devices())


@st.composite
def _with_unknown_content(draw: st.DrawFn, document: Document, everywhere: bool = False) -> Injected:
    root = document.to_element()
    count = 0
    for element in list(root.iter()):
        if not isinstance(element.tag, str) or element.get(_MARK) is not None:
            continue
        if everywhere or draw(st.booleans()):
            element.set(f"harness-unknown-{count}", f"value {count} & <{count}>")
            count += 1
        if element.text is not None and element.text.strip():
            continue  # text-carrying elements (<name>, <bus>, ...) take no children
        if everywhere or draw(st.booleans()):
            child = etree.Element(draw(st.sampled_from(_UNKNOWN_TAGS)), {_MARK: f"m{count}"})
            if draw(st.booleans()):
                etree.SubElement(child, "nested", depth="2").text = f"text {count}"
            element.insert(draw(st.integers(0, len(element))), child)
            count += 1
    unread = frozenset(unknown_content(document))
    text = etree.tostring(root)
    tree = etree.fromstring(text).getroottree()
    paths = set()
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        path = tree.getpath(element)
        if element.get(_MARK) is not None:
            paths.add(path)
            continue  # what is inside an unknown element is that element's content
        if any(ancestor.get(_MARK) is not None for ancestor in element.iterancestors()):
            continue
        names = [str(name) for name in element.attrib]
        paths.update(f"{path}/@{name}" for name in names if name.startswith("harness-unknown"))
    return Injected(text, frozenset(paths), unread)


def _change_one_field(document: Document) -> Document:
    """A change of one modelled field that a harness would make."""
    if isinstance(document, Domain):
        hostdevs = [d for d in document.devices if isinstance(d, PciHostdev)]
        if hostdevs:
            index = document.devices.index(hostdevs[0])
            changed = dataclasses.replace(hostdevs[0], managed=not hostdevs[0].managed)
            devices = (*document.devices[:index], changed, *document.devices[index + 1 :])
            return dataclasses.replace(document, devices=devices)
        return dataclasses.replace(document, name=document.name + "-changed")
    if isinstance(document, Network):
        return dataclasses.replace(document, name=document.name + "-changed")
    if isinstance(document, NodeDevice | NonPciNodeDevice):
        # Changed, not removed: removing a modelled element removes what it carried, by design.
        return dataclasses.replace(document, driver="vfio-pci" if document.driver != "vfio-pci" else "igb")
    if isinstance(document, PciHostdev):
        return dataclasses.replace(document, managed=not document.managed)
    if isinstance(document, HostdevInterface):
        return dataclasses.replace(document, managed=not document.managed)
    return document


def _marked(root: Element) -> dict[str, tuple[list[str], int, bytes]]:
    """Each unknown element by mark: its ancestors' tags, its rank among marked siblings, its content."""
    found = {}
    for element in root.iter():
        mark = element.get(_MARK) if isinstance(element.tag, str) else None
        if mark is None:
            continue
        parent = element.getparent()
        siblings = [] if parent is None else [c for c in parent if c.get(_MARK) is not None]
        ancestors = [str(a.tag) for a in element.iterancestors()]
        found[mark] = (ancestors, siblings.index(element), etree.tostring(element, method="c14n"))
    return found


def _unknown_attributes(root: Element) -> set[tuple[tuple[str, ...], str, str]]:
    return {
        ((*(str(a.tag) for a in element.iterancestors()), str(element.tag)), str(name), str(value))
        for element in root.iter()
        if isinstance(element.tag, str)
        for name, value in element.attrib.items()
        if str(name).startswith("harness-unknown")
    }


def _assert_kept(before: Element, after: Element) -> None:
    marked_before, marked_after = _marked(before), _marked(after)
    assert marked_after == marked_before, (
        f"unknown elements moved or lost: expected {marked_before}, found {marked_after}; "
        f"written: {etree.tostring(after, encoding='unicode')}"
    )
    assert _unknown_attributes(after) == _unknown_attributes(before), etree.tostring(after).decode()


@_NO_DEADLINE
@given(_documents().flatmap(lambda doc: _with_unknown_content(doc)))
def test_unknown_content_survives_read_modify_write(injected: Injected) -> None:
    parsed = parse_any(injected.text)
    changed = _change_one_field(parsed)
    written = changed.to_element()
    _assert_kept(etree.fromstring(injected.text), written)
    again = parse_any(etree.tostring(written))
    assert again == changed, f"expected {changed!r}, found {again!r}"


@_NO_DEADLINE
@given(_documents().flatmap(lambda doc: _with_unknown_content(doc, everywhere=True)))
def test_unknown_content_at_every_level_survives_a_plain_round_trip(injected: Injected) -> None:
    written = parse_any(injected.text).to_element()
    before = etree.fromstring(injected.text)
    _assert_kept(before, written)
    assert etree.tostring(written, method="c14n") == etree.tostring(before, method="c14n")


@_NO_DEADLINE
@given(_documents().flatmap(lambda doc: _with_unknown_content(doc)))
def test_strict_mode_names_exactly_the_unknown_content(injected: Injected) -> None:
    parsed = parse_any(injected.text)
    # What is added inside content no model reads is that content's business, named with it.
    inside_unread = {p for p in injected.paths if any(p.startswith(u + "/") for u in injected.unread)}
    assert set(unknown_content(parsed)) == (injected.paths - inside_unread) | injected.unread
    if injected.paths:
        try:
            parse_any(injected.text, strict=True)
        except XmlModelError as error:
            assert sorted(injected.paths)[0] in str(error) or any(p in str(error) for p in injected.paths)
        else:
            raise AssertionError(f"strict parse accepted unknown content {sorted(injected.paths)}")
    elif not injected.unread:
        assert parse_any(injected.text, strict=True) == parsed


@_NO_DEADLINE
@given(_built_documents())
def test_models_built_from_scratch_have_no_unknown_content(document: Document) -> None:
    assert unknown_content(document) == []
    assert unknown_content(parse_any(document.to_xml())) == []


def test_a_serializer_that_loses_unknown_content_is_caught(monkeypatch: Any) -> None:
    """The fidelity check bites: a compose whose copies of unknown elements come out changed fails it."""
    import copy

    import harness.xml.base as base

    class Forgetful:
        @staticmethod
        def deepcopy(original: Element) -> Element:
            copied = copy.deepcopy(original)
            if copied.get(_MARK) is not None:
                copied.set(_MARK, "lost")
            return copied

    monkeypatch.setattr(base, "copy", Forgetful)
    hostdev = PciHostdev.parse(
        f"<hostdev mode='subsystem' type='pci'><alias {_MARK}='m0'/><source>"
        "<address domain='0' bus='1' slot='0' function='0'/></source></hostdev>"
    )
    assert hostdev.parsed_from is not None
    before = etree.fromstring(etree.tostring(hostdev.parsed_from))
    try:
        _assert_kept(before, hostdev.to_element())
    except AssertionError as error:
        assert "moved or lost" in str(error)
    else:
        raise AssertionError("an unknown element that came out changed went unnoticed")


def _driver_attributes(element: Element) -> dict[str, str]:
    driver = element.find("driver")
    return {} if driver is None else {str(k): str(v) for k, v in driver.attrib.items() if k != "name"}


_DRIVER_CHANGES: tuple[HostdevDriver | Literal["managed", "no-name"], ...] = (
    "managed",
    "vfio",
    "kvm",
    "no-name",
)


@_NO_DEADLINE
@given(hs.hostdevs_with_driver_attributes(), st.sampled_from(_DRIVER_CHANGES))
def test_driver_attributes_the_models_do_not_read_survive_every_change(
    device: PciHostdev | HostdevInterface, change: HostdevDriver | Literal["managed", "no-name"]
) -> None:
    """``<driver model='vfio-pci-igb'/>``, ``<driver queues='4'/>`` (no name=) and the like stay
    through a change of any field, the driver name included; the name is the model's."""
    assert device.parsed_from is not None
    before = _driver_attributes(device.parsed_from)
    assert before, "the strategy always adds attributes"
    changed: PciHostdev | HostdevInterface
    if change == "managed":
        changed = dataclasses.replace(device, managed=not device.managed)
    elif change == "no-name":
        changed = dataclasses.replace(device, driver=None)
    else:
        changed = dataclasses.replace(device, driver=change)
    written = changed.to_element()
    assert _driver_attributes(written) == before, etree.tostring(written).decode()
    driver = written.find("driver")
    assert driver is not None and driver.get("name") == changed.driver, etree.tostring(written).decode()
    assert type(changed).parse(etree.tostring(written)) == changed


@_NO_DEADLINE
@given(hs.non_pci_node_devices())
def test_non_pci_node_devices_are_read_and_written_back_unchanged(device: NonPciNodeDevice) -> None:
    assert device.parsed_from is not None
    text = etree.tostring(device.parsed_from)
    again = parse_any(text)
    assert isinstance(again, NonPciNodeDevice) and again == device
    assert etree.tostring(again.to_element(), method="c14n") == etree.tostring(
        etree.fromstring(text), method="c14n"
    )
    assert device.capability_types[0] in {"net", "usb_device", "scsi_host"}
    # A PCI model refuses it with the truth: it has a name, it is not a PCI device.
    try:
        NodeDevice.parse(text)
    except XmlModelError as error:
        message = str(error)
        assert device.name in message and "not a PCI device" in message, message
        assert f"'{device.capability_types[0]}'" in message, message
    else:
        raise AssertionError(f"NodeDevice took a {device.capability_types[0]} device")
