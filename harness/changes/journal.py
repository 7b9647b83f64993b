"""The change journal: every change is written down, with its owner, before it is made.

An entry is a JSON line ``{"id", "kind", "owner", "change", "at"}``; a later ``{"id", "done": true}``
line finishes it. Every read-modify-write (append, compaction) holds one ``flock`` on a lock file beside
the journal, so xdist workers and separate runs on the same host can share one journal: an entry another
process appends while one compacts is never lost.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.host.root import NotARegularFileError, read_regular_file

DEFAULT_JOURNAL = Path("/var/lib/hostdev-harness/journal.jsonl")
# A journal is compacted when its run ends; one this large was not written by the harness.
JOURNAL_MAX_BYTES = 64 * 1024 * 1024


class JournalError(HarnessInputError):
    """The journal cannot be read as a journal; nothing was undone."""


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot: a reused pid has another one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Owner:
    """Who made a change: a run (one pytest session or CLI call), a worker in it, a process on a boot."""

    run_id: str
    worker: str
    pid: int
    boot_id: str
    started: int | None

    @classmethod
    def this_process(cls, run_id: str | None = None, worker: str = "main") -> Owner:
        pid = os.getpid()
        return cls(run_id or uuid.uuid4().hex[:12], worker, pid, _boot_id(), _process_start(pid))

    def is_alive(self) -> bool:
        """The process that owns the change still runs (same boot, same pid, same start time)."""
        if self.boot_id != _boot_id():
            return False
        started = _process_start(self.pid)
        return started is not None and (self.started is None or started == self.started)

    def __str__(self) -> str:
        return f"run {self.run_id} worker {self.worker} pid {self.pid}"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Owner:
        return cls(
            str(record["run_id"]),
            str(record["worker"]),
            int(record["pid"]),
            str(record["boot_id"]),
            None if record.get("started") is None else int(record["started"]),
        )


@dataclass(frozen=True)
class JournalEntry:
    """One pending change as the journal holds it: ``kind`` and ``change`` decode through harness.changes."""

    id: str
    kind: str
    owner: Owner
    change: dict[str, Any]
    at: float


class ChangeJournal:
    """An append-only JSON-lines file; an entry without a matching ``done`` line is still pending."""

    def __init__(self, path: Path = DEFAULT_JOURNAL) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"ChangeJournal({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                f"cannot open the journal's lock {self.lock_path}: {exc.strerror}; "
                "give --harness-journal / --journal a writable file path"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self._locked():
            try:
                stream = self.path.open("a+")
            except OSError as exc:
                raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}") from None
            with stream:
                # A line torn by a crash must not swallow the next record.
                size = stream.tell()
                torn = size > 0 and (stream.seek(size - 1), stream.read(1))[1] != "\n"
                stream.write(("\n" if torn else "") + line + "\n")
                stream.flush()
                os.fsync(stream.fileno())  # the record must survive a crash of the run that wrote it

    def record(self, kind: str, change: dict[str, Any], owner: Owner) -> str:
        """Write a change down before it is made; returns the entry id to ``complete`` it with."""
        entry_id = uuid.uuid4().hex
        self._append(
            {"id": entry_id, "kind": kind, "owner": asdict(owner), "change": change, "at": time.time()}
        )
        return entry_id

    def complete(self, entry_id: str) -> None:
        self._append({"id": entry_id, "done": True})

    def _read(self) -> list[JournalEntry]:
        try:
            text = read_regular_file(self.path, JOURNAL_MAX_BYTES).decode()
        except FileNotFoundError:
            return []
        except NotARegularFileError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc.problem}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from None
        entries: dict[str, JournalEntry] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if line.lstrip().startswith("{"):
                    continue  # a line torn by a crash mid-write: the record was never made
                raise JournalError(
                    f"{self.path} line {number} is not a journal record (expected a JSON object); "
                    "is this the harness's journal?"
                ) from None
            try:
                if record.get("done"):
                    entries.pop(str(record["id"]), None)
                else:
                    entries[str(record["id"])] = JournalEntry(
                        str(record["id"]),
                        str(record["kind"]),
                        Owner.from_record(record["owner"]),
                        dict(record["change"]),
                        float(record["at"]),
                    )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise JournalError(
                    f"{self.path} line {number}: a journal record without a valid {exc} field; "
                    "nothing was undone: fix or move the file, then run hostdev-harness restore"
                ) from None
        # Undo the newest change first: VFs are removed before their PF gets its driver back.
        return sorted(entries.values(), key=lambda entry: entry.at, reverse=True)

    def pending(self) -> list[JournalEntry]:
        with self._locked():
            return self._read()

    def compact(self) -> None:
        """Drop finished entries: rewrite the file with what is pending, under the lock (no lost appends)."""
        with self._locked():
            if not self.path.exists():
                return
            pending = self._read()
            if not pending:
                self.path.unlink()
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            with temporary.open("w") as stream:
                for entry in reversed(pending):
                    record = {
                        "id": entry.id,
                        "kind": entry.kind,
                        "owner": asdict(entry.owner),
                        "change": entry.change,
                        "at": entry.at,
                    }
                    stream.write(json.dumps(record) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            temporary.replace(self.path)
