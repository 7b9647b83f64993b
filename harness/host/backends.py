"""Where a host is read from: this machine or a snapshot, two backends behind one interface.

Like testinfra's backends, each one answers the same questions (its files through a ``HostRoot``,
libvirt's facts, the KVM probe), so the plugin, the CLI and the suites never ask "is this live?".
The live backend does not talk to libvirt itself: ``harness.opening`` hands it the provider of libvirt's facts.
A snapshot is recognised by its manifest (``.harness/manifest.json``): any other directory is refused.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessInputError
from harness.host.kvm import KvmProbe, probe_kvm
from harness.host.libvirt_facts import LibvirtFacts
from harness.host.root import HostRoot

# What a snapshot stores that is not a file on the host (a probe's result, a libvirt answer).
SNAPSHOT_MANIFEST = "/.harness/manifest.json"
SNAPSHOT_PROBES = "/.harness/probes.json"
SNAPSHOT_LIBVIRT = "/.harness/libvirt.json"
SNAPSHOT_FORMAT = "hostdev-harness-snapshot"
SNAPSHOT_FORMAT_VERSION = 1


class NotASnapshotError(HarnessInputError):
    """A path given as a host snapshot that is not one."""


class HostBackend(Protocol):
    """What a ``Host`` reads through: files below a root, libvirt's facts, the KVM probe."""

    root: HostRoot
    description: str

    @property
    def is_live(self) -> bool: ...

    @property
    def libvirt_uri(self) -> str | None:
        """The URI the run talks to, without connecting (None: a snapshot that did not record it)."""
        ...

    def libvirt_facts(self) -> LibvirtFacts: ...

    def kvm_probe(self) -> KvmProbe: ...

    def close(self) -> None: ...


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the snapshot at ``path``; raises ``NotASnapshotError`` naming what is wrong."""
    directory = Path(path)
    make_one = "capture one with: hostdev-harness snapshot DIR"
    if not directory.exists():
        raise NotASnapshotError(f"host snapshot {path} does not exist; {make_one}")
    if not directory.is_dir():
        raise NotASnapshotError(f"host snapshot {path} is not a directory; {make_one}")
    manifest_path = directory / SNAPSHOT_MANIFEST.lstrip("/")
    # Through a HostRoot: a manifest that is a FIFO, a device or a link out of the snapshot is refused.
    text = HostRoot(directory).read_text(SNAPSHOT_MANIFEST)
    if text is None:
        raise NotASnapshotError(
            f"{path} is not a host snapshot (it has no {SNAPSHOT_MANIFEST.lstrip('/')}); {make_one}"
        )
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise NotASnapshotError(
            f"{manifest_path}: unreadable snapshot manifest ({exc}); capture the snapshot again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
        raise NotASnapshotError(f"{manifest_path}: not a {SNAPSHOT_FORMAT} manifest; {make_one}")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise NotASnapshotError(
            f"{manifest_path}: snapshot format version {json.dumps(version)} is not a version number "
            f"(1 to {SNAPSHOT_FORMAT_VERSION}); capture the snapshot again"
        )
    if version > SNAPSHOT_FORMAT_VERSION:
        raise NotASnapshotError(
            f"{manifest_path}: snapshot format version {version!r}, this harness reads up to "
            f"{SNAPSHOT_FORMAT_VERSION}; upgrade hostdev-harness"
        )
    return manifest


def _shape_problem(value: object, hint: Any, where: str = "") -> str | None:
    """What in ``value`` (parsed JSON) does not fit the type ``hint``, or None: the recorded answers are
    checked against the dataclass they load into, so a field of the wrong type is refused, not believed."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [_shape_problem(value, arg, where) for arg in args]
        return None if None in problems else problems[0]
    if hint is type(None):
        return None if value is None else f"{where or 'the document'} is {value!r}, expected null"
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            return f"{where or 'the document'} is not an object"
        hints = typing.get_type_hints(hint)
        required = {
            f.name for f in dataclasses.fields(hint) if f.default is f.default_factory is dataclasses.MISSING
        }
        if missing := sorted(required - set(value)):
            return f"{where or 'the document'} lacks {', '.join(missing)}"
        if unknown := sorted(set(value) - set(hints)):
            return f"{where or 'the document'} has unknown keys {', '.join(unknown)}"
        for key, item in value.items():
            if problem := _shape_problem(item, hints[key], f"{where}.{key}" if where else key):
                return problem
        return None
    if origin in (list, tuple):
        if not isinstance(value, list):
            return f"{where} is not a list"
        return next(
            (p for i, v in enumerate(value) if (p := _shape_problem(v, args[0], f"{where}[{i}]"))), None
        )
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} is not an object"
        return next((p for k, v in value.items() if (p := _shape_problem(v, args[1], f"{where}.{k}"))), None)
    expected = hint if isinstance(hint, type) else object
    # bool is an int in Python, not in JSON: an iommu_group of true is refused.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f"{where} is {json.dumps(value)[:40]}, expected {getattr(expected, '__name__', expected)}"
    return None


class SnapshotBackend:
    """A host captured by ``hostdev-harness snapshot``: files, and the recorded probe and libvirt answers."""

    def __init__(self, path: str | Path) -> None:
        self.manifest = read_manifest(path)
        self.root = HostRoot(path)
        self.description = f"snapshot {self.root.path}"

    @property
    def is_live(self) -> bool:
        return False

    @property
    def libvirt_uri(self) -> str | None:
        try:
            uri = json.loads(self.root.read_text(SNAPSHOT_LIBVIRT) or "{}").get("uri")
        except (ValueError, AttributeError):
            return None
        return uri if isinstance(uri, str) else None

    def libvirt_facts(self) -> LibvirtFacts:
        recorded = self.root.read_text(SNAPSHOT_LIBVIRT)
        if recorded is None:
            return LibvirtFacts.unreachable("(none)", "libvirt's answers were not recorded in this snapshot")
        data = self.root.read_json(SNAPSHOT_LIBVIRT, "libvirt's recorded answers (an object)") or {}
        problem = _shape_problem(data, LibvirtFacts)
        if problem is not None:
            raise self.root.error(SNAPSHOT_LIBVIRT, f"not libvirt's recorded answers: {problem}")
        return LibvirtFacts.from_json(recorded)

    def kvm_probe(self) -> KvmProbe:
        expected = 'the KVM probe\'s result ({"kvm": {"usable": true|false, "detail": "..."}})'
        probes = self.root.read_json(SNAPSHOT_PROBES, expected) or {}
        kvm = probes.get("kvm", {"usable": False, "detail": "not recorded in this snapshot"})
        if (
            not isinstance(kvm, dict)
            or set(kvm) != {"usable", "detail"}
            or not isinstance(kvm["usable"], bool)
            or not isinstance(kvm["detail"], str)
        ):
            raise self.root.error(SNAPSHOT_PROBES, f"holds {str(kvm)[:60]!r}, expected {expected}")
        return KvmProbe(usable=kvm["usable"], detail=kvm["detail"])

    def close(self) -> None:
        pass


class LiveBackend:
    """This machine. libvirt's facts come from the provider it is handed, asked only when a check needs them."""

    def __init__(
        self, uri: str, libvirt_facts: Callable[[], LibvirtFacts], close: Callable[[], None] = lambda: None
    ) -> None:
        self.root = HostRoot("/")
        self.uri = uri
        self.description = f"this machine ({uri})"
        self._libvirt_facts = libvirt_facts
        self._close = close

    @property
    def is_live(self) -> bool:
        return True

    @property
    def libvirt_uri(self) -> str | None:
        return self.uri

    def libvirt_facts(self) -> LibvirtFacts:
        return self._libvirt_facts()

    def kvm_probe(self) -> KvmProbe:
        return probe_kvm()

    def close(self) -> None:
        self._close()
