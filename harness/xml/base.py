"""Shared parsing and building helpers: safe lxml parsing, typed attribute readers, serialization.

Models stay bound to the element they were parsed from (virtinst's ``xmlbuilder`` way): ``compose``
writes a model back onto a copy of that element, so whatever the model does not know (elements,
attributes, their order and whitespace) survives a read-modify-write. A model built from scratch has
nothing bound and ``compose`` builds its element fresh, in libvirt's order.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, TypeVar, cast

from lxml import etree

from harness.xml.errors import XmlModelError, malformed_from_syntax_error

__all__ = [
    "UINT_MAX",
    "Base",
    "Bound",
    "Child",
    "Element",
    "XmlModel",
    "compose",
    "expect_tag",
    "get_choice",
    "get_int",
    "get_yes_no",
    "int_as_written",
    "line_of",
    "located_at",
    "origin_of",
    "parse_document",
    "parse_libvirt_int",
    "parse_libvirt_uint",
    "refuse_unknown_content",
    "reject_children",
    "required_attr",
    "set_attr",
    "text_child",
    "to_xml_string",
    "unknown_content",
    "yes_no",
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


@dataclass(frozen=True)
class Bound:
    """A model value that may be bound to the element it was parsed from.

    ``parsed_from`` takes no part in equality or hashing, and ``dataclasses.replace`` carries it over:
    change one field of a parsed model and the rest of its element is still there when it is written.
    """

    parsed_from: Element | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class XmlModel(Bound):
    """One class parses and builds its element; text in and out is the same for every model."""

    @classmethod
    def from_element(cls, element: Element) -> Self:
        raise NotImplementedError

    def to_element(self) -> Element:
        raise NotImplementedError

    @classmethod
    def parse(cls, text: str | bytes, *, strict: bool = False) -> Self:
        """``strict`` refuses a document holding anything the model does not know, naming it."""
        model = cls.from_element(parse_document(text))
        if strict:
            refuse_unknown_content(model)
        return model

    def to_xml(self) -> str:
        return to_xml_string(self.to_element())


class _Writable(Protocol):
    """Anything with ``to_element``: the models and their nested values."""

    def to_element(self) -> Element: ...


# --- writing a model back onto its element ---------------------------------------------------------

# (built element, the element of the parsed document it replaces, or None for a new one)
Child = tuple[Element, Element | None]

# While ``unknown_content`` runs, ``compose`` records here the path of everything it keeps unread.
_unknown_paths: ContextVar[list[tuple[str, int | None]] | None] = ContextVar("unknown_paths", default=None)


def origin_of(parent: Element | None, tag: str) -> Element | None:
    """The first ``<tag>`` child of a bound element, or None (nothing bound, or no such child)."""
    return None if parent is None else parent.find(tag)


def text_child(parent: Element | None, tag: str, text: str | None) -> Child:
    """``<tag>text</tag>`` written over the parsed one, keeping its attributes."""
    origin = origin_of(parent, tag)
    return compose(tag, origin, (), (), text=text, owns_text=True), origin


def _same_kind(original: Element, built: Element) -> bool:
    return original.tag == built.tag and original.get("type") == built.get("type")


def _record_unknown(where: Element, what: str) -> None:
    paths = _unknown_paths.get()
    if paths is not None:
        paths.append((where.getroottree().getpath(where) + what, line_of(where)))


def compose(
    tag: str,
    parsed_from: Element | None,
    attributes: Sequence[tuple[str, str | None]],
    children: Sequence[Child],
    *,
    owns: Callable[[Element], bool] = lambda _child: False,
    text: str | None = None,
    owns_text: bool = False,
) -> Element:
    """Write one element: ``attributes`` and ``children`` are what the model owns, in libvirt's order.

    With nothing bound this builds the element fresh. Bound, it starts from the parsed element:
    attributes the model owns take the model's value (None removes them), the others are kept in
    place; each built child replaces the parsed child it came from (or, failing that, the first
    unclaimed owned child of the same tag and type), owned children the model dropped are removed,
    children ``owns`` does not claim are copied as they were, and new children go next to their
    neighbours in the model's order.
    """
    if parsed_from is None:
        element = etree.Element(tag)
        for name, value in attributes:
            if value is not None:
                element.set(name, value)
        element.text = text
        for built, _origin in children:
            element.append(built)
        return element

    element = etree.Element(tag, nsmap=cast(Any, parsed_from.nsmap))
    owned_attributes = dict(attributes)
    for raw_name, raw_value in parsed_from.attrib.items():
        name, value = str(raw_name), str(raw_value)
        if name not in owned_attributes:
            element.set(name, value)
            _record_unknown(parsed_from, f"/@{name}")
        elif (new_value := owned_attributes[name]) is not None:
            element.set(name, new_value)
    for name, value in attributes:
        if value is not None and name not in parsed_from.attrib:
            element.set(name, value)
    element.text = text if owns_text else parsed_from.text

    originals = list(parsed_from)
    # ids are stable here: ``originals`` keeps every proxy alive while this runs
    position_of = {id(original): position for position, original in enumerate(originals)}
    claims: dict[int, int] = {}  # index among originals -> index among children
    for index, (_built, origin) in enumerate(children):
        position = None if origin is None else position_of.get(id(origin))
        if position is not None and position not in claims:
            claims[position] = index
    claimed = set(claims.values())
    for index, (built, _origin) in enumerate(children):
        if index in claimed:
            continue
        for position, original in enumerate(originals):
            if (
                position not in claims
                and isinstance(original.tag, str)
                and _same_kind(original, built)
                and owns(original)
            ):
                claims[position] = index
                claimed.add(index)
                break
    for position, original in enumerate(originals):
        if position in claims:
            built = children[claims[position]][0]
            built.tail = original.tail
            element.append(built)
        elif isinstance(original.tag, str) and owns(original):
            continue  # the model no longer has it
        else:
            element.append(copy.deepcopy(original))
            if isinstance(original.tag, str):
                _record_unknown(original, "")
    for index, (built, _origin) in enumerate(children):
        if index in claimed:
            continue
        before = [b for b, _o in children[:index] if b.getparent() is element]
        after = [b for b, _o in children[index + 1 :] if b.getparent() is element]
        if before:
            before[-1].addnext(built)
        elif after:
            after[0].addprevious(built)
        else:
            element.append(built)
    return element


@contextmanager
def _collecting_unknown() -> Iterator[list[tuple[str, int | None]]]:
    paths: list[tuple[str, int | None]] = []
    token = _unknown_paths.set(paths)
    try:
        yield paths
    finally:
        _unknown_paths.reset(token)


def unknown_content(model: _Writable) -> list[str]:
    """XPaths of the elements and attributes of a parsed model's document that no model reads.

    Empty for a model built from scratch. ``/domain/devices/hostdev[1]/teaming`` names an element,
    ``.../@persistent`` an attribute.
    """
    with _collecting_unknown() as paths:
        model.to_element()
    return [path for path, _line in paths]


def refuse_unknown_content(model: _Writable) -> None:
    with _collecting_unknown() as paths:
        model.to_element()
    if paths:
        first_path, first_line = paths[0]
        root = first_path.split("/")[1] if first_path.count("/") > 1 else first_path
        raise XmlModelError(
            root,
            f"not modelled, refused in strict mode: {', '.join(path for path, _line in paths)}",
            attribute=first_path,
            line=first_line,
        )


def line_of(element: Element) -> int | None:
    line: object = element.sourceline
    return line if isinstance(line, int) else None


@contextmanager
def located_at(element: Element) -> Iterator[None]:
    """An XmlModelError raised inside that names no line yet takes ``element``'s line.

    A model's ``__post_init__`` checks know no line; its ``from_element`` runs them in here.
    """
    try:
        yield
    except XmlModelError as error:
        error.line = error.line or line_of(element)
        raise


def expect_tag(element: Element, tag: str) -> None:
    if element.tag != tag:
        raise XmlModelError(str(element.tag), f"expected <{tag}>", line=line_of(element))


def required_attr(element: Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise XmlModelError(str(element.tag), "missing attribute", attribute=name, line=line_of(element))
    return value


# strtoul(base 0) as libvirt's virStrToLong_uip uses it, with the whole text consumed: leading
# blanks and a '+' are fine, trailing ones are not (``\Z``: ``$`` would take a trailing newline);
# 0x.. is hex, a leading 0 is octal.
_C_BLANKS = r"[ \t\n\v\f\r]*"
_LIBVIRT_UINT = re.compile(rf"^{_C_BLANKS}\+?(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))\Z")
# virStrToLong_ui with base 10 or 16: strtoul's blanks and '+', base 16 with or without 0x, no '-'.
_LIBVIRT_UINT_BASE = {
    10: re.compile(rf"^{_C_BLANKS}\+?([0-9]+)\Z"),
    16: re.compile(rf"^{_C_BLANKS}\+?(?:0[xX])?([0-9a-fA-F]+)\Z"),
}
UINT_MAX = 0xFFFF_FFFF
Base = Literal[0, 10, 16]


def parse_libvirt_int(text: str) -> int:
    """Read an integer the way libvirt does (strtoul base 0): 0x.. is hex, a leading 0 is octal."""
    match = _LIBVIRT_UINT.match(text)
    if match is None:
        raise ValueError(text)
    hexadecimal, octal, decimal = match.groups()
    if hexadecimal is not None:
        return int(hexadecimal, 16)
    if octal is not None:
        return int(octal, 8)
    return int(decimal, 10)


def parse_libvirt_uint(text: str, base: Base) -> int:
    """An unsigned int as libvirt's ``virStrToLong_ui(text, NULL, base)`` reads it, whole text.

    Base 0 is :func:`parse_libvirt_int` (not bounded here).
    Base 10 is what ``virXMLPropUInt(..., 10, ...)`` parses (boot order, VLAN tag, node-device
    numbers): ``010`` is ten. Base 16 is node-device ids and class: ``0x0FFE``, ``0ffe``, ``ffe``.
    """
    if base == 0:
        return parse_libvirt_int(text)  # range checks are the callers' (PCI limits name the part)
    match = _LIBVIRT_UINT_BASE[base].match(text)
    if match is None:
        raise ValueError(text)
    value = int(match.group(1), base)
    if value > UINT_MAX:
        raise ValueError(text)
    return value


def int_as_written(raw: str | None, number: int, base: Base = 0, *, formatted: str | None = None) -> str:
    """The parsed text of an unchanged number (``+5``, `` 010``, ``0X1F`` stay), else ``formatted``."""
    if raw is not None:
        try:
            if parse_libvirt_uint(raw, base) == number:
                return raw
        except ValueError:
            pass
    return str(number) if formatted is None else formatted


_BASE_WORDS = {0: "an integer", 10: "a decimal integer", 16: "a hex number"}


def get_int(element: Element, name: str, *, required: bool = False, base: Base = 0) -> int | None:
    """An attribute read as libvirt's parser reads it there: ``base`` 0 (0x.. hex, 0.. octal) or 10."""
    raw = required_attr(element, name) if required else element.get(name)
    if raw is None:
        return None
    try:
        return parse_libvirt_uint(raw, base)
    except ValueError:
        raise XmlModelError(
            str(element.tag), f"not {_BASE_WORDS[base]}", attribute=name, value=raw, line=line_of(element)
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


def yes_no(value: bool | None) -> str | None:
    return None if value is None else "yes" if value else "no"


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
