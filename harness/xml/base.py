"""Shared parsing and building helpers: safe lxml parsing, typed attribute readers, serialization."""

from __future__ import annotations

from typing import Self, TypeVar

from lxml import etree

from harness.xml.errors import XmlModelError, malformed_from_syntax_error

__all__ = [
    "Element",
    "XmlModel",
    "expect_tag",
    "get_choice",
    "get_int",
    "get_yes_no",
    "line_of",
    "parse_document",
    "parse_libvirt_int",
    "reject_children",
    "required_attr",
    "set_attr",
    "set_yes_no",
    "to_xml_string",
]

Element = etree._Element
_T = TypeVar("_T")


def _parser() -> etree.XMLParser:
    # No entity expansion or network access: fixture and generated documents are data, not code.
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)


def parse_document(text: str | bytes) -> Element:
    """Parse XML text; a MalformedXmlError names the line and the element left open or broken."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    parser = _parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise malformed_from_syntax_error(error, parser.error_log) from None
    if root is None:
        raise XmlModelError("?", "empty document")
    return root


def to_xml_string(element: Element) -> str:
    return etree.tostring(element, encoding="unicode", pretty_print=True)


class XmlModel:
    """One class parses and builds its element; text in and out is the same for every model."""

    @classmethod
    def from_element(cls, element: Element) -> Self:
        raise NotImplementedError

    def to_element(self) -> Element:
        raise NotImplementedError

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        return cls.from_element(parse_document(text))

    def to_xml(self) -> str:
        return to_xml_string(self.to_element())


def line_of(element: Element) -> int | None:
    line: object = element.sourceline
    return line if isinstance(line, int) else None


def expect_tag(element: Element, tag: str) -> None:
    if element.tag != tag:
        raise XmlModelError(str(element.tag), f"expected <{tag}>", line=line_of(element))


def required_attr(element: Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise XmlModelError(str(element.tag), "missing attribute", attribute=name, line=line_of(element))
    return value


def parse_libvirt_int(text: str) -> int:
    """Read an integer the way libvirt does (strtoul base 0): 0x.. is hex, a leading 0 is octal."""
    stripped = text.strip()
    if stripped[:2] in ("0x", "0X"):
        return int(stripped[2:], 16)
    if len(stripped) > 1 and stripped.startswith("0"):
        return int(stripped[1:], 8)
    if not stripped.isdigit():
        raise ValueError(text)
    return int(stripped, 10)


def get_int(element: Element, name: str, *, required: bool = False) -> int | None:
    raw = required_attr(element, name) if required else element.get(name)
    if raw is None:
        return None
    try:
        return parse_libvirt_int(raw)
    except ValueError:
        raise XmlModelError(
            str(element.tag), "not an integer", attribute=name, value=raw, line=line_of(element)
        ) from None


def get_yes_no(element: Element, name: str) -> bool | None:
    raw = element.get(name)
    if raw is None:
        return None
    if raw not in ("yes", "no"):
        raise XmlModelError(
            str(element.tag), "expected 'yes' or 'no'", attribute=name, value=raw, line=line_of(element)
        )
    return raw == "yes"


def get_choice(element: Element, name: str, choices: tuple[_T, ...]) -> _T | None:
    raw = element.get(name)
    if raw is None:
        return None
    for choice in choices:
        if raw == choice:
            return choice
    raise XmlModelError(
        str(element.tag),
        f"expected one of {', '.join(map(str, choices))}",
        attribute=name,
        value=raw,
        line=line_of(element),
    )


def set_attr(element: Element, name: str, value: object) -> None:
    if value is not None:
        element.set(name, str(value))


def set_yes_no(element: Element, name: str, value: bool | None) -> None:
    if value is not None:
        element.set(name, "yes" if value else "no")


def reject_children(element: Element, forbidden: dict[str, str]) -> None:
    """Raise for a child that libvirt's schema forbids here; the dict maps tag to the reason."""
    for child in element:
        if isinstance(child.tag, str) and child.tag in forbidden:
            raise XmlModelError(
                str(element.tag),
                forbidden[child.tag],
                attribute=f"<{child.tag}>",
                line=line_of(child),
            )
