"""The guard refuses what must never be touched; the journal remembers what to undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guard import DeviceGuard, DeviceRefusedError
from harness.host.host import Host
from harness.journal import ChangeJournal
from tests.synthetic_hosts import FIXTURES

INTEL = FIXTURES / "synthetic-intel-iommu-on"
VIRTIO = FIXTURES / "debian12-virtio"


def test_host_critical_is_refused_even_when_allowlisted() -> None:
    guard = DeviceGuard(Host.from_snapshot(VIRTIO), ["0000:00:03.0"])
    with pytest.raises(
        DeviceRefusedError, match=r"0000:00:03.0 is host-critical: it carries the default route \(eth0\)"
    ):
        guard.permit("0000:00:03.0")
    assert guard.permitted() == []


def test_allowlist_is_the_only_way_in() -> None:
    guard = DeviceGuard(Host.from_snapshot(INTEL), ["0000:01:00.0"])
    assert guard.permit("0000:01:00.0").driver == "igb"
    assert "not on the allowlist" in (guard.refusal("0000:00:1c.0") or "")


def test_unknown_and_malformed_devices_are_named() -> None:
    guard = DeviceGuard(Host.from_snapshot(INTEL), [])
    assert guard.refusal("0000:09:00.0") == "0000:09:00.0 is not a PCI device of this host"
    with pytest.raises(ValueError, match="not a PCI address"):
        DeviceGuard(Host.from_snapshot(INTEL), ["eth0"])


def test_refuse_list_makes_a_device_critical() -> None:
    guard = DeviceGuard(Host.from_snapshot(INTEL, refuse=("0000:01:00.0",)), ["0000:01:00.0"])
    assert "refuse list" in (guard.refusal("0000:01:00.0") or "")


def test_journal_pending_until_done_and_newest_first(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    first = journal.begin("sriov_numvfs", "0000:01:00.0", 0)
    second = journal.begin("detach", "0000:01:10.0", "igbvf")
    assert [e.id for e in journal.pending()] == [second, first]
    journal.complete(second)
    assert [e.action for e in journal.pending()] == ["sriov_numvfs"]
    with (tmp_path / "journal.jsonl").open("a") as stream:
        stream.write('{"id": "torn')  # a crash mid-write
    assert [e.id for e in journal.pending()] == [first]
    journal.complete(first)
    journal.compact()
    assert not (tmp_path / "journal.jsonl").exists()
