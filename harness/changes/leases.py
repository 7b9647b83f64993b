"""Leases on IOMMU groups: one holder of a group at a time, across xdist workers and separate runs.

A device is assigned with its whole IOMMU group, so the group is the unit of exclusion (a device with
no group, on a host without an IOMMU, is leased alone). A lease is an ``flock`` on a file per group under
``/run/hostdev-harness/leases``; the holder writes its owner into the file so a waiter can say who holds
it, and every grant and release is appended to ``audit.jsonl`` so a test can prove no group ever had
two holders at once. Leases are re-entrant within one process and taken in a fixed order (no deadlock).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.changes.journal import Owner
from harness.errors import HarnessError
from harness.host.pci import PciDevice
from harness.xml.address import PciAddress

DEFAULT_LEASE_DIR = Path("/run/hostdev-harness/leases")
AUDIT_LOG = "audit.jsonl"


class LeaseBusyError(HarnessError):
    """A group stayed held by another owner for longer than the wait allowed."""


@dataclass(frozen=True)
class LeaseKey:
    """What one lease excludes: an IOMMU group, or a device that has none (then it goes alone).

    ``str(key)`` is the name of its lease file and its ``key`` in the audit log (``group-9``,
    ``device-0000:01:00.0``), as every version wrote them; keys are taken in the order of that text.
    """

    group: int | None = None
    device: PciAddress | None = None  # only for a device without a group

    @classmethod
    def of(cls, device: PciDevice) -> LeaseKey:
        if device.iommu_group is not None:
            return cls(group=device.iommu_group)
        return cls(device=device.address)

    def __str__(self) -> str:
        return f"group-{self.group}" if self.group is not None else f"device-{self.device}"

    def __lt__(self, other: LeaseKey) -> bool:
        return str(self) < str(other)

    @property
    def description(self) -> str:
        """``group 9`` or ``device 0000:01:00.0``: what a busy lease's message names."""
        return f"group {self.group}" if self.group is not None else f"device {self.device}"


@dataclass
class GroupLeases:
    """The leases one owner holds."""

    owner: Owner
    directory: Path = DEFAULT_LEASE_DIR
    held: dict[LeaseKey, tuple[int, int]] = field(default_factory=dict)  # key -> (fd, depth)

    def _audit(self, key: LeaseKey, event: str) -> None:
        record = json.dumps({"key": str(key), "event": event, "at": time.time(), "owner": asdict(self.owner)})
        fd = os.open(self.directory / AUDIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (record + "\n").encode())  # one write on O_APPEND: lines never interleave
        finally:
            os.close(fd)

    def _acquire(self, key: LeaseKey, wait: float) -> None:
        if key in self.held:
            fd, depth = self.held[key]
            self.held[key] = (fd, depth + 1)
            return
        path = self.directory / f"{key}.lease"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "an unknown owner"
                    os.close(fd)
                    raise LeaseBusyError(
                        f"IOMMU {key.description} is held by {holder} for more than {wait:.0f} s; "
                        "another run or worker uses it (nothing was changed)"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.owner}\n".encode(), 0)
        self.held[key] = (fd, 1)
        self._audit(key, "granted")

    def _release(self, key: LeaseKey) -> None:
        fd, depth = self.held[key]
        if depth > 1:
            self.held[key] = (fd, depth - 1)
            return
        del self.held[key]
        self._audit(key, "released")
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock

    @contextmanager
    def hold(self, devices: Iterable[PciDevice], wait: float = 900.0) -> Iterator[list[LeaseKey]]:
        """Hold the groups of ``devices`` for a block; groups are taken in sorted order."""
        self.directory.mkdir(parents=True, exist_ok=True)
        keys = sorted({LeaseKey.of(device) for device in devices})
        taken: list[LeaseKey] = []
        try:
            for key in keys:
                self._acquire(key, wait)
                taken.append(key)
            yield keys
        finally:
            for key in reversed(taken):
                self._release(key)


def read_audit(directory: Path = DEFAULT_LEASE_DIR) -> list[dict[str, object]]:
    try:
        lines = (directory / AUDIT_LOG).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def overlapping_holders(records: list[dict[str, object]]) -> list[str]:
    """Every moment the audit log shows a group granted while another owner still held it."""
    holder: dict[str, object] = {}
    problems = []
    for record in sorted(records, key=lambda r: float(str(r["at"]))):
        key, owner = str(record["key"]), record["owner"]
        if record["event"] == "granted":
            if key in holder and holder[key] != owner:
                problems.append(f"{key} granted to {owner} while {holder[key]} held it")
            holder[key] = owner
        elif holder.get(key) == owner:
            del holder[key]
    return problems
