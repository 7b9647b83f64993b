"""The change journal: every change to a device is written down before it is made, and undone after."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_JOURNAL = Path("/var/lib/hostdev-harness/journal.jsonl")


@dataclass(frozen=True)
class JournalEntry:
    id: str
    # "detach" (before = the original driver), "sriov_numvfs" (before = the original VF count),
    # "sriov_drivers_autoprobe" (before = "0" or "1"),
    # "guest" (device = a transient domain holding managed hostdevs; undone by destroying it).
    action: str
    device: str
    before: str | int | None
    at: float


class ChangeJournal:
    """An append-only JSON-lines file; an entry without a matching ``done`` line is still pending."""

    def __init__(self, path: Path = DEFAULT_JOURNAL) -> None:
        self.path = path

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as stream:
            # A line torn by a crash must not swallow the next record.
            torn = stream.tell() > 0 and (stream.seek(stream.tell() - 1), stream.read(1))[1] != "\n"
            stream.write(("\n" if torn else "") + json.dumps(record) + "\n")
            stream.flush()
            os.fsync(stream.fileno())  # the record must survive a crash of the run that wrote it

    def begin(self, action: str, device: str, before: str | int | None) -> str:
        entry_id = uuid.uuid4().hex
        self._append(
            {"id": entry_id, "action": action, "device": device, "before": before, "at": time.time()}
        )
        return entry_id

    def complete(self, entry_id: str) -> None:
        self._append({"id": entry_id, "done": True})

    def pending(self) -> list[JournalEntry]:
        if not self.path.exists():
            return []
        entries: dict[str, JournalEntry] = {}
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-write: the entry before it is what counts
            if record.get("done"):
                entries.pop(record["id"], None)
            elif "action" in record:
                entries[record["id"]] = JournalEntry(
                    record["id"], record["action"], record["device"], record["before"], record["at"]
                )
        # Undo the newest change first: VFs are removed before their PF gets its driver back.
        return sorted(entries.values(), key=lambda entry: entry.at, reverse=True)

    def compact(self) -> None:
        """Forget finished entries once nothing is pending."""
        if self.path.exists() and not self.pending():
            self.path.unlink()
