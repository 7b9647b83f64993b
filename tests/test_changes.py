"""Changes, the journal, owners and leases: what must hold when several processes share a host.

A test-only kind (``FileValue``) writes a file, so these run with no device and no libvirt; the real
kinds are proved in the nested lab (tests/nested/test_kill_points.py, test_suites_in_lab.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.changes.journal import ChangeJournal, JournalError, Owner, _process_start
from harness.changes.leases import GroupLeases, LeaseBusyError, overlapping_holders, read_audit
from harness.changes.protocol import (
    Change,
    ChangeContext,
    ChangeError,
    HostChanges,
    decode,
    orphaned,
    recover,
)
from harness.errors import HarnessInputError
from harness.host.pci import PciDevice
from harness.host.root import HostRoot
from harness.xml.address import PciAddress

FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class FileValue(Change, kind="test_file_value"):
    """Writes ``value`` into ``path``; undone by writing ``before`` back."""

    path: str
    before: str
    value: str

    def describe(self) -> str:
        return f"write {self.value} to {self.path}"

    def reproduce(self) -> str:
        return f"echo {self.value} > {self.path}"

    def apply(self, context: ChangeContext) -> None:
        Path(self.path).write_text(self.value)

    def verify(self, context: ChangeContext) -> None:
        if Path(self.path).read_text() != self.value:
            raise ChangeError(f"{self.path} does not read {self.value}")

    def undo(self, context: ChangeContext) -> str:
        Path(self.path).write_text(self.before)
        return f"wrote {self.before} back to {self.path}"


@dataclass(frozen=True)
class BrokenVerify(FileValue, kind="test_broken_verify"):
    def verify(self, context: ChangeContext) -> None:
        raise ChangeError("verification found the change not in effect")


def _context() -> ChangeContext:
    def no_libvirt() -> object:
        raise AssertionError("no libvirt here")

    return ChangeContext(HostRoot("/"), no_libvirt)


def _changes(tmp_path: Path, owner: Owner | None = None) -> HostChanges:
    return HostChanges(_context(), ChangeJournal(tmp_path / "journal.jsonl"), owner or Owner.this_process())


def _dead_owner() -> Owner:
    child = FORK.Process(target=lambda: None)
    child.start()
    child.join()
    assert child.pid is not None
    return Owner("deadrun", "gw9", child.pid, Owner.this_process().boot_id, 1)


def test_entries_name_their_owner_and_stay_pending_until_done(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    owner = Owner.this_process("run1", "gw0")
    first = journal.record("test_file_value", {"path": "a", "before": "0", "value": "1"}, owner)
    second = journal.record("test_file_value", {"path": "b", "before": "0", "value": "1"}, owner)
    assert [e.id for e in journal.pending()] == [second, first]  # newest first
    assert journal.pending()[0].owner == owner and owner.is_alive()
    journal.complete(second)
    with journal.path.open("a") as stream:
        stream.write('{"id": "torn')  # a crash mid-write
    assert [e.id for e in journal.pending()] == [first]
    journal.complete(first)
    journal.compact()
    assert not journal.path.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "this is not json\n",
            r"line 1 is not a journal record \(expected a JSON object\); is this the harness's journal\?",
        ),
        (
            '{"id": "x", "kind": "detach"}\n',
            "line 1: a journal record without a valid 'owner' field; nothing was undone: fix or move the file, "
            "then run hostdev-harness restore",
        ),
        ('{"id": "x", "kind": "k", "owner": 5, "change": {}, "at": 1}\n', "line 1: a journal record"),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused_by_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(content)
    with pytest.raises(JournalError, match=message):
        ChangeJournal(path).pending()
    assert path.read_text() == content  # nothing was changed


def test_an_unknown_kind_is_named_not_guessed(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    journal.record("teleport", {}, Owner.this_process())
    [entry] = journal.pending()
    with pytest.raises(HarnessInputError, match="'teleport' change, which this harness does not know"):
        decode(entry)


def test_owner_liveness_sees_exits_pid_reuse_and_reboots() -> None:
    me = Owner.this_process()
    assert me.is_alive()
    assert not _dead_owner().is_alive()
    assert not Owner(me.run_id, me.worker, me.pid, me.boot_id, (me.started or 0) + 1).is_alive()  # pid reused
    assert not Owner(me.run_id, me.worker, me.pid, "another-boot", me.started).is_alive()


def test_recovery_undoes_dead_owners_only(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    dead_file, live_file = tmp_path / "dead", tmp_path / "live"
    dead_file.write_text("changed")
    live_file.write_text("changed")
    journal.record(
        "test_file_value", {"path": str(dead_file), "before": "orig", "value": "changed"}, _dead_owner()
    )
    live = Owner.this_process("live-run", "gw0")
    journal.record("test_file_value", {"path": str(live_file), "before": "orig", "value": "changed"}, live)
    recovery = recover(journal, _context())
    assert recovery.undone == [f"wrote orig back to {dead_file}"]
    assert dead_file.read_text() == "orig" and live_file.read_text() == "changed"
    assert len(recovery.held) == 1 and "live-run" in recovery.held[0]
    assert [e.owner for e in journal.pending()] == [live]


def test_a_change_that_fails_verification_is_undone_and_finished(tmp_path: Path) -> None:
    target = tmp_path / "value"
    target.write_text("orig")
    changes = _changes(tmp_path)
    with pytest.raises(ChangeError, match="not in effect"):
        changes.make(BrokenVerify(str(target), "orig", "new"))
    assert target.read_text() == "orig"
    assert changes.journal.pending() == [] and changes.made == []


def test_undo_all_undoes_only_this_owner_newest_first(tmp_path: Path) -> None:
    target = tmp_path / "value"
    target.write_text("0")
    other = _changes(tmp_path, Owner.this_process("other-run", "gw1"))
    mine = _changes(tmp_path)
    mine.make(FileValue(str(target), "0", "1"))
    mine.make(FileValue(str(target), "1", "2"))
    (tmp_path / "theirs").write_text("x")
    other.make(FileValue(str(tmp_path / "theirs"), "orig", "x"))
    assert mine.undo_all() == [f"wrote 1 back to {target}", f"wrote 0 back to {target}"]
    assert target.read_text() == "0" and (tmp_path / "theirs").read_text() == "x"
    assert [e.owner.run_id for e in mine.journal.pending()] == ["other-run"]


class KillAt(HostChanges):
    """Dies by SIGKILL at one named moment of one change: the harshest interruption there is."""

    kill_point: str = ""

    def checkpoint(self, point: str, change: Change) -> None:
        if point == self.kill_point:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("point", ["recorded", "applied", "verified", "undoing"])
def test_sigkill_at_any_moment_of_a_change_is_recovered(tmp_path: Path, point: str) -> None:
    target = tmp_path / "value"
    target.write_text("orig")

    def driver() -> None:
        changes = KillAt(_context(), ChangeJournal(tmp_path / "journal.jsonl"), Owner.this_process())
        changes.kill_point = point
        change = changes.make(FileValue(str(target), "orig", "new"))
        changes.undo(change)

    child = FORK.Process(target=driver)
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    dead, live = orphaned(journal)
    assert len(dead) == 1 and not live
    recovery = recover(journal, _context())
    assert recovery.undone == [f"wrote orig back to {target}"]
    assert target.read_text() == "orig" and journal.pending() == []


def _append_many(path: Path, count: int, tag: str) -> None:
    journal = ChangeJournal(path)
    owner = Owner.this_process(tag)
    for number in range(count):
        entry = journal.record(
            "test_file_value", {"path": f"{tag}{number}", "before": "", "value": ""}, owner
        )
        if number % 2:
            journal.complete(entry)


def _compact_until(path: Path, stop: float) -> None:
    journal = ChangeJournal(path)
    while time.monotonic() < stop:
        journal.compact()


def test_compaction_never_loses_an_entry_appended_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    stop = time.monotonic() + 30
    writers = [FORK.Process(target=_append_many, args=(path, 200, tag)) for tag in ("a", "b")]
    compactor = FORK.Process(target=_compact_until, args=(path, stop))
    compactor.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    compactor.kill()
    compactor.join()
    pending = {entry.change["path"] for entry in ChangeJournal(path).pending()}
    assert pending == {f"{tag}{n}" for tag in ("a", "b") for n in range(0, 200, 2)}


def _device(group: int | None, address: str = "0000:01:00.0") -> PciDevice:
    return PciDevice(
        PciAddress.from_bdf(address), f"/sys/devices/{address}", "8086", "10d3", "0x020000", iommu_group=group
    )


def _hold_many(directory: Path, tag: str, inside: Path) -> None:
    leases = GroupLeases(Owner.this_process(tag), directory)
    for _ in range(25):
        # Two functions of one group: the same lease, taken again re-entrantly.
        with leases.hold([_device(5, "0000:01:00.0")]), leases.hold([_device(5, "0000:01:00.1")]):
            assert not inside.exists(), "another holder is inside group 5"
            inside.write_text(tag)
            time.sleep(0.002)
            inside.unlink()


def test_two_processes_never_hold_one_group_at_once(tmp_path: Path) -> None:
    inside = tmp_path / "inside"
    workers = [
        FORK.Process(target=_hold_many, args=(tmp_path / "leases", tag, inside)) for tag in ("gw0", "gw1")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0]
    audit = read_audit(tmp_path / "leases")
    assert len(audit) == 2 * 25 * 2  # granted and released, once per outer hold
    assert overlapping_holders(audit) == []


def test_the_audit_check_catches_an_overlap() -> None:
    first, second = {"run_id": "a"}, {"run_id": "b"}
    records: list[dict[str, object]] = [
        {"key": "group-5", "event": "granted", "at": 1.0, "owner": first},
        {"key": "group-5", "event": "granted", "at": 2.0, "owner": second},
        {"key": "group-5", "event": "released", "at": 3.0, "owner": first},
    ]
    assert overlapping_holders(records) == [
        "group-5 granted to {'run_id': 'b'} while {'run_id': 'a'} held it"
    ]


def test_a_busy_group_names_its_holder(tmp_path: Path) -> None:
    holder = GroupLeases(Owner.this_process("holder-run", "gw0"), tmp_path)
    waiter = GroupLeases(Owner.this_process("waiter-run", "gw1"), tmp_path)
    # flock is per open file: a second GroupLeases in one process contends like another process.
    busy = pytest.raises(LeaseBusyError, match="group 7 is held by run holder-run worker gw0")
    with holder.hold([_device(7)]), busy, waiter.hold([_device(7)], wait=0.3):
        pass
    with waiter.hold([_device(7)], wait=0.3):
        pass
    with holder.hold([_device(None, "0000:02:00.0")]) as keys:
        assert [str(key) for key in keys] == ["device-0000:02:00.0"]  # no IOMMU: the device alone


# The journal file and its owners as another process (or a person with `cat`) reads them.


def test_the_journal_is_one_json_record_per_line(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    owner = Owner.this_process("run1")
    first = journal.record("test_file_value", {"path": "a", "before": "0", "value": "1"}, owner)
    journal.record("test_file_value", {"path": "b", "before": "0", "value": "1"}, owner)
    journal.complete(first)
    lines = journal.path.read_text().split("\n")
    assert lines[-1] == "" and all(lines[:-1]), f"blank or missing lines in the journal: {lines}"
    records = [json.loads(line) for line in lines[:-1]]
    assert [sorted(record) for record in records] == [
        ["at", "change", "id", "kind", "owner"],
        ["at", "change", "id", "kind", "owner"],
        ["done", "id"],
    ]
    assert records[2] == {"id": first, "done": True}
    assert repr(journal) == f"ChangeJournal({str(journal.path)!r})"


@pytest.mark.parametrize("torn", ["{", '{"id": "x", "ki', '  {"id": "x"'])
def test_a_record_after_a_torn_line_starts_a_line_of_its_own(tmp_path: Path, torn: str) -> None:
    """A crash may leave any prefix of a record, down to its first byte."""
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    journal.path.write_text(torn)
    entry = journal.record(
        "test_file_value", {"path": "a", "before": "0", "value": "1"}, Owner.this_process()
    )
    assert [e.id for e in journal.pending()] == [entry]
    assert journal.path.read_text().split("\n")[0] == torn


def test_a_journal_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").mkdir()
    with pytest.raises(JournalError, match=r"cannot write the journal .*journal.jsonl: Is a directory"):
        ChangeJournal(tmp_path / "journal.jsonl").record("test_file_value", {}, Owner.this_process())


def test_an_owner_names_this_process_and_when_it_started() -> None:
    me = Owner.this_process()
    assert re.fullmatch(r"[0-9a-f]{12}", me.run_id), me.run_id
    assert str(Owner.this_process("r1")) == f"run r1 worker main pid {os.getpid()}"
    assert me.started is not None and me.started == Owner.this_process().started
    record = {"run_id": "r", "worker": "gw0", "pid": 7, "boot_id": "b"}
    assert Owner.from_record(record).started is None  # written by a harness that did not record it
    assert Owner.from_record({**record, "started": "12"}).started == 12


def _wait_with_comm(comm: str, ready: Any, release: Any) -> None:
    Path("/proc/self/comm").write_text(comm)
    ready.set()
    release.wait(30)


def test_process_start_is_read_after_the_command_name_whatever_it_holds() -> None:
    """/proc/PID/stat field 22 (start time in clock ticks); the command name may hold ') ' itself."""
    ready, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_wait_with_comm, args=("a) b) c", ready, release))
    child.start()
    try:
        assert ready.wait(30)
        assert child.pid is not None
        assert "a) b) c" in Path(f"/proc/{child.pid}/stat").read_text()
        started = _process_start(child.pid)
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        assert started is not None, "no start time"
        # The child started in the last minute: its start time is the uptime then, in clock ticks.
        assert 0 <= uptime - started / os.sysconf("SC_CLK_TCK") < 60, (started, uptime)
    finally:
        release.set()
        child.join()


def test_blank_lines_and_repeated_done_lines_are_harmless(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    owner = Owner.this_process()
    first = journal.record("test_file_value", {"path": "a", "before": "0", "value": "1"}, owner)
    with journal.path.open("a") as stream:
        stream.write("\n  \n")  # a hand edit
    second = journal.record("test_file_value", {"path": "b", "before": "0", "value": "1"}, owner)
    journal.complete(first)
    journal.complete(first)  # undone twice (recovery and the run's own undo)
    assert [e.id for e in journal.pending()] == [second]
    # Every process locks the same file beside the journal.
    assert journal.lock_path == tmp_path / "journal.jsonl.lock" and journal.lock_path.exists()
