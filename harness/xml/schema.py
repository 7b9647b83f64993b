"""libvirt's installed RelaxNG schemas, loaded once, through lxml."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from lxml import etree

from harness.errors import HarnessEnvironmentError
from harness.xml.base import Element

__all__ = ["SCHEMA_DIR", "SchemaKind", "SchemaMissingError", "load_schema", "schema_errors", "schema_path"]

SCHEMA_DIR = Path("/usr/share/libvirt/schemas")
SchemaKind = Literal["domain", "network", "nodedev"]


class SchemaMissingError(HarnessEnvironmentError, FileNotFoundError):
    """The schema file is not installed (Debian: libvirt-daemon-driver-* / libvirt-common)."""


def schema_path(kind: SchemaKind, schema_dir: Path = SCHEMA_DIR) -> Path:
    return schema_dir / f"{kind}.rng"


@functools.cache
def load_schema(kind: SchemaKind, schema_dir: Path = SCHEMA_DIR) -> etree.RelaxNG:
    path = schema_path(kind, schema_dir)
    if not path.is_file():
        raise SchemaMissingError(f"libvirt RelaxNG schema not installed: {path}")
    # Parsed from the file path so that <include href="basictypes.rng"/> resolves beside it.
    return etree.RelaxNG(etree.parse(str(path)))


def schema_errors(kind: SchemaKind, element: Element, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Empty when ``element`` validates; otherwise lxml's messages with their lines."""
    schema = load_schema(kind, schema_dir)
    # Validate a reparsed copy so that line numbers refer to the serialized text.
    document = etree.fromstring(etree.tostring(element))
    if schema.validate(document):
        return []
    return [f"line {entry.line}: {entry.message}" for entry in schema.error_log]
