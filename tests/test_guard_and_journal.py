"""The guard refuses what must never be touched; the journal remembers what to undo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.devices import DeviceChangeError, DeviceChanger
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


def _writable_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "host"
    shutil.copytree(INTEL, copy, symlinks=True)
    (copy / "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/sriov_drivers_autoprobe").write_text("1\n")
    return copy


def test_vf_count_and_autoprobe_are_journaled_and_restored(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    pf_dir = root / "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0"
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    changer = DeviceChanger(None, DeviceGuard(Host.from_snapshot(root), ["0000:01:00.0"]), journal)
    assert changer.set_numvfs("0000:01:00.0", 3, autoprobe=False) == 0
    assert (pf_dir / "sriov_numvfs").read_text() == "3" and (
        pf_dir / "sriov_drivers_autoprobe"
    ).read_text() == "0"
    assert [e.action for e in journal.pending()] == ["sriov_numvfs", "sriov_drivers_autoprobe"]
    assert changer.restore_pending("0000:01:00.0") == [
        "set 0000:01:00.0 sriov_numvfs back to 0",
        "set 0000:01:00.0 sriov_drivers_autoprobe back to 1",
    ]
    assert (pf_dir / "sriov_numvfs").read_text() == "0" and (
        pf_dir / "sriov_drivers_autoprobe"
    ).read_text() == "1"
    assert journal.pending() == []


def test_vf_count_out_of_range_changes_nothing(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    changer = DeviceChanger(None, DeviceGuard(Host.from_snapshot(root), ["0000:01:00.0"]), journal)
    with pytest.raises(DeviceChangeError, match="offers 0 to 7 VFs, not 8; nothing was changed"):
        changer.set_numvfs("0000:01:00.0", 8)
    assert journal.pending() == []
    with pytest.raises(DeviceRefusedError, match="not on the allowlist"):
        changer.set_numvfs("0000:00:1c.0", 1)
