"""Changes as objects: each kind knows how to apply, verify and undo itself, and is journaled with its owner.

A kind is a frozen dataclass deriving from ``Change`` with ``kind="name"``; it registers itself, so the
journal can turn a record back into the object that undoes it, and the undo loop never asks what kind it
holds. ``HostChanges`` is the one place a change is made: it asks the guard, journals the change with
its owner *before* applying it, verifies it, and on failure undoes what the change did. Recovery undoes
only entries whose owner process is gone: nothing ever undoes a change a live owner holds.

Each kind is a module of this package (``driver_detach``, ``sriov``, ``link_state``, ``guests``,
``networks``, ``hotplug``), imported by the package's ``__init__`` so that ``decode`` knows every kind.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from harness.changes.journal import ChangeJournal, JournalEntry, Owner
from harness.errors import HarnessInputError, HostChangeError
from harness.host.root import HostRoot
from harness.xml.address import PciAddress

if TYPE_CHECKING:
    import libvirt

    from harness.changes.guard import DeviceGuard


class ChangeError(HostChangeError):
    """A change did not take effect (or could not be undone) as expected; the message says where to look."""


@dataclass
class ChangeContext:
    """What a change acts on: the host's files, and libvirt, connected only when a change needs it."""

    root: HostRoot
    connect: Callable[[], libvirt.virConnect]

    @cached_property
    def connection(self) -> libvirt.virConnect:
        return self.connect()


class Change(ABC):
    """One change to the host. Subclasses are frozen dataclasses: their fields are the journal record."""

    kind: ClassVar[str] = ""
    kinds: ClassVar[dict[str, type[Change]]] = {}

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind:
            cls.kind = kind
            Change.kinds[kind] = cls

    def touches(self) -> tuple[PciAddress, ...]:
        """The PCI devices the guard must permit before this change is made."""
        return ()

    @abstractmethod
    def describe(self) -> str:
        """What the change does, for a person: ``detach 0000:01:00.0 (e1000e) to vfio-pci``."""

    @abstractmethod
    def reproduce(self) -> str:
        """The command that makes the same change by hand (``virsh nodedev-detach pci_0000_01_00_0``)."""

    @abstractmethod
    def apply(self, context: ChangeContext) -> None: ...

    @abstractmethod
    def verify(self, context: ChangeContext) -> None:
        """Raise ChangeError unless the change is in effect where a person would look."""

    @abstractmethod
    def undo(self, context: ChangeContext) -> str:
        """Put back what the change changed (a no-op when it is already back); says what it did."""

    def to_record(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return {
            item.name: _encode(getattr(self, item.name)) for item in dataclasses.fields(self) if item.init
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Change:
        assert dataclasses.is_dataclass(cls)
        hints = typing.get_type_hints(cls)
        values = {}
        for item in dataclasses.fields(cls):
            if item.name in record:
                value = record[item.name]
                address = value is not None and hints[item.name] in _ADDRESS_HINTS
                values[item.name] = PciAddress.from_bdf(value) if address else value
        return cls(**values)


_ADDRESS_HINTS = (PciAddress, PciAddress | None)


def _encode(value: object) -> object:
    return value.bdf if isinstance(value, PciAddress) else value


def decode(entry: JournalEntry) -> Change:
    """The change a journal entry holds; a kind this version does not know is an input error."""
    kind = Change.kinds.get(entry.kind)
    if kind is None:
        raise HarnessInputError(
            f"journal entry {entry.id} is a {entry.kind!r} change, which this harness does not know "
            f"(known: {', '.join(sorted(Change.kinds))}); undo it by hand or with the version that made it"
        )
    try:
        return kind.from_record(entry.change)
    except (TypeError, ValueError) as exc:
        raise HarnessInputError(f"journal entry {entry.id} ({entry.kind}) cannot be read: {exc}") from None


ChangeT = TypeVar("ChangeT", bound=Change)


@dataclass
class _Made:
    entry_id: str
    change: Change


@dataclass
class HostChanges:
    """Makes changes for one owner: guarded, journaled first, verified, undone in reverse order."""

    context: ChangeContext
    journal: ChangeJournal
    owner: Owner
    guard: DeviceGuard | None = None
    made: list[_Made] = field(default_factory=list)

    @property
    def root(self) -> HostRoot:
        return self.context.root

    @property
    def connection(self) -> libvirt.virConnect:
        return self.context.connection

    def checkpoint(self, point: str, change: Change) -> None:
        """A named moment in a change's life (``recorded``, ``applied``, ...); the kill-point tests use it."""

    def make(self, change: ChangeT) -> ChangeT:
        """Apply ``change`` and verify it; if anything fails, undo it and raise. Returns the change."""
        if self.guard is not None:
            for address in change.touches():
                self.guard.permit(address)
        entry_id = self.journal.record(change.kind, change.to_record(), self.owner)
        self.made.append(_Made(entry_id, change))
        self.checkpoint("recorded", change)
        try:
            change.apply(self.context)
            self.checkpoint("applied", change)
            change.verify(self.context)
            self.checkpoint("verified", change)
        except BaseException:
            self._undo_made(self.made[-1])  # a half-made change is put back at once; the error stands
            raise
        return change

    def undo(self, change: Change) -> str:
        """Undo one change this owner made."""
        for made in reversed(self.made):
            if made.change is change:
                return self._undo_made(made)
        raise ChangeError(f"{change.describe()} was not made by {self.owner}: not undone")

    def _undo_made(self, made: _Made) -> str:
        self.checkpoint("undoing", made.change)
        what = made.change.undo(self.context)
        self.journal.complete(made.entry_id)
        self.made.remove(made)
        self.checkpoint("undone", made.change)
        return what

    @contextmanager
    def holding(self, change: ChangeT) -> Iterator[ChangeT]:
        """Make ``change`` for the length of a block; undo it after, whatever happens in the block."""
        self.make(change)
        try:
            yield change
        finally:
            if any(made.change is change for made in self.made):
                self.undo(change)

    def undo_all(self) -> list[str]:
        """Undo everything this owner still holds, newest first (its own journal entries included)."""
        done = [self._undo_made(made) for made in reversed(list(self.made))]
        mine = [entry for entry in self.journal.pending() if entry.owner == self.owner]
        done += undo_entries(self.journal, mine, self.context)
        self.journal.compact()
        return done


def undo_entries(journal: ChangeJournal, entries: list[JournalEntry], context: ChangeContext) -> list[str]:
    """Undo journal entries newest first; each one that could not be undone is named in one error."""
    done, failed = [], []
    for entry in entries:
        try:
            done.append(decode(entry).undo(context))
            journal.complete(entry.id)
        except HostChangeError as exc:
            failed.append(f"{entry.kind} {entry.id[:8]}: {exc}")
    if failed:
        raise ChangeError("could not undo: " + "; ".join(failed) + f" (still pending in {journal.path})")
    return done


@dataclass(frozen=True)
class Recovery:
    """What recovering a journal found: what was undone, and what live owners still hold."""

    undone: list[str]
    held: list[str]


def orphaned(journal: ChangeJournal) -> tuple[list[JournalEntry], list[JournalEntry]]:
    """Pending entries split into those whose owner is gone, and those a live owner still holds."""
    entries = journal.pending()
    dead = [entry for entry in entries if not entry.owner.is_alive()]
    live = [entry for entry in entries if entry.owner.is_alive()]
    return dead, live


def recover(journal: ChangeJournal, context: ChangeContext) -> Recovery:
    """Undo what owners that are gone left behind (an interrupted run); leave live owners' changes alone."""
    dead, live = orphaned(journal)
    undone = undo_entries(journal, dead, context) if dead else []
    journal.compact()
    held = [f"{entry.kind} held by {entry.owner}: {entry.change}" for entry in live]
    return Recovery(undone, held)


def recover_host(journal: ChangeJournal, uri: str) -> Recovery:
    """The one recovery of this machine, for the plugin (orphans at session start and end) and
    ``hostdev-harness restore``: undo what owners that are gone left; libvirt at ``uri`` only if an entry needs it."""
    from harness.libvirt.daemon import connected  # a VF count needs no libvirt: none is opened for it

    dead, _live = orphaned(journal)
    if not dead:
        return Recovery([], [])
    with ExitStack() as stack:
        return recover(journal, ChangeContext(HostRoot("/"), lambda: stack.enter_context(connected(uri))))
