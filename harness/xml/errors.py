"""Typed errors for the XML models: each names the element, the attribute or value, and the line."""

from __future__ import annotations

import re

from lxml import etree

from harness.errors import HarnessInputError

__all__ = ["MalformedXmlError", "XmlModelError", "malformed_from_syntax_error"]


class XmlModelError(HarnessInputError):
    """A document or a model value that libvirt would refuse (a ValueError, through HarnessInputError).

    ``element`` is the XML element at fault, ``attribute`` the attribute (or child) that is wrong,
    ``value`` the offending value, ``line`` the source line when the error came from parsing text.
    """

    def __init__(
        self,
        element: str,
        problem: str,
        *,
        attribute: str | None = None,
        value: object = None,
        line: int | None = None,
    ) -> None:
        self.element = element
        self.problem = problem
        self.attribute = attribute
        self.value = value
        self.line = line
        super().__init__(problem)

    def __str__(self) -> str:
        # Built on demand: a parent parser may fill in ``line`` after a child raised.
        where = f"<{self.element}>"
        if self.attribute is not None:
            where += f" {self.attribute}={self.value!r}" if self.value is not None else f" {self.attribute}"
        elif self.value is not None:
            where += f" value {self.value!r}"
        if self.line is not None:
            where = f"line {self.line}: {where}"
        return f"{where}: {self.problem}"


class MalformedXmlError(XmlModelError):
    """Text that is not well-formed XML; ``line`` and ``element`` come from lxml's error log."""


# libxml2 names the element in most well-formedness messages, e.g.
# "Opening and ending tag mismatch: mac line 4 and interface" or "Premature end of data in tag source line 2".
_ELEMENT_IN_MESSAGE = (
    re.compile(r"tag mismatch: ([\w:.-]+) line (\d+)"),
    re.compile(r"in tag ([\w:.-]+) line (\d+)"),
    re.compile(r"end of Start Tag ([\w:.-]+) line (\d+)"),
)


def malformed_from_syntax_error(
    error: etree.XMLSyntaxError, log: etree._ListErrorLog | None = None
) -> MalformedXmlError:
    """Turn lxml's errors for one parse into a MalformedXmlError naming the element and its line.

    libxml2 notices an unclosed tag where the parent closes; the element left open is the one named
    in the message, with the line it was opened on, which is what a person has to fix.
    """
    messages = [(entry.line, entry.message.strip()) for entry in (log or [])]
    if not messages:
        messages = [(error.lineno, str(error))]
    first_line, first_message = messages[0]
    for _line, message in messages:
        for pattern in _ELEMENT_IN_MESSAGE:
            match = pattern.search(message)
            if match:
                return MalformedXmlError(
                    match.group(1),
                    f"malformed XML: {first_message} (noticed at line {first_line})",
                    line=int(match.group(2)),
                )
    return MalformedXmlError("?", f"malformed XML: {first_message}", line=first_line)
