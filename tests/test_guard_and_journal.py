"""The guard refuses what must never be touched; the journal remembers what to undo."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.changes.guard import DeviceGuard, DeviceRefusedError
from harness.changes.journal import ChangeJournal, Owner
from harness.changes.networks import DefinedNetwork
from harness.changes.protocol import Change, ChangeContext, ChangeError, HostChanges
from harness.changes.sriov import VfAutoprobe, VfCount
from harness.host.host import Host
from harness.host.pci import parse_pci_address
from harness.libvirt.networks import vf_pool
from harness.opening import open_host
from harness.xml.address import PciAddress
from tests.synthetic_hosts import FIXTURES

INTEL = FIXTURES / "synthetic-intel-iommu-on"
VIRTIO = FIXTURES / "debian12-virtio"


def test_host_critical_is_refused_even_when_allowlisted() -> None:
    guard = DeviceGuard(open_host(VIRTIO), [PciAddress.from_bdf("0000:00:03.0")])
    with pytest.raises(
        DeviceRefusedError, match=r"0000:00:03.0 is host-critical: it carries the default route \(eth0\)"
    ):
        guard.permit(PciAddress.from_bdf("0000:00:03.0"))
    assert guard.permitted() == []


def test_allowlist_is_the_only_way_in() -> None:
    guard = DeviceGuard(open_host(INTEL), [PciAddress.from_bdf("0000:01:00.0")])
    assert guard.permit(PciAddress.from_bdf("0000:01:00.0")).driver == "igb"
    assert "not on the allowlist" in (guard.refusal(PciAddress.from_bdf("0000:00:1c.0")) or "")


def test_unknown_and_malformed_devices_are_named() -> None:
    guard = DeviceGuard(open_host(INTEL), [])
    assert (
        guard.refusal(PciAddress.from_bdf("0000:09:00.0")) == "0000:09:00.0 is not a PCI device of this host"
    )
    with pytest.raises(ValueError, match="not a PCI address"):
        DeviceGuard(open_host(INTEL), [parse_pci_address("eth0")])


def test_refuse_list_makes_a_device_critical() -> None:
    guard = DeviceGuard(
        open_host(INTEL, refuse=(PciAddress.from_bdf("0000:01:00.0"),)),
        [PciAddress.from_bdf("0000:01:00.0")],
    )
    assert "refuse list" in (guard.refusal(PciAddress.from_bdf("0000:01:00.0")) or "")


def _writable_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "host"
    shutil.copytree(INTEL, copy, symlinks=True)
    (copy / "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/sriov_drivers_autoprobe").write_text("1\n")
    return copy


def test_vf_count_out_of_range_changes_nothing(tmp_path: Path) -> None:
    host = open_host(_writable_copy(tmp_path))
    with pytest.raises(ChangeError, match="offers 0 to 7 VFs, not 8; nothing was changed"):
        VfCount.of(host.root, host.pci.get(PciAddress.from_bdf("0000:01:00.0")), 8)
    with pytest.raises(ChangeError, match="is not an SR-IOV PF"):
        VfCount.of(host.root, host.pci.get(PciAddress.from_bdf("0000:00:1c.0")), 1)


@pytest.mark.parametrize(
    ("make_change", "says"),
    [
        (
            lambda host: VfAutoprobe.of(
                host.root, host.pci.get(PciAddress.from_bdf("0000:00:1c.0")), enabled=False
            ),
            "0000:00:1c.0 is not on the allowlist",
        ),
        # libvirt hands out the VFs of <pf dev>: the guard is asked about the PF behind the interface.
        (lambda host: DefinedNetwork.of(host.root, vf_pool(pf="eno1")), "0000:00:1f.6 is host-critical"),
    ],
    ids=["autoprobe-off-the-allowlist", "vf-pool-on-the-host-nic"],
)
def test_the_guard_refuses_before_anything_is_journaled(
    tmp_path: Path, make_change: Callable[[Host], Change], says: str
) -> None:
    host = open_host(_writable_copy(tmp_path))
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    changes = HostChanges(
        ChangeContext(host.root, _no_libvirt),
        journal,
        Owner.this_process(),
        DeviceGuard(host, [PciAddress.from_bdf("0000:01:00.0")]),
    )
    with pytest.raises(DeviceRefusedError, match=says):
        changes.make(make_change(host))
    assert journal.pending() == [] and not journal.path.exists()


def test_autoprobe_is_journaled_applied_verified_and_undone(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    host = open_host(root)
    pf_dir = root / "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0"
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    owner = Owner.this_process()
    changes = HostChanges(
        ChangeContext(host.root, _no_libvirt),
        journal,
        owner,
        DeviceGuard(host, [PciAddress.from_bdf("0000:01:00.0")]),
    )
    change = changes.make(
        VfAutoprobe.of(host.root, host.pci.get(PciAddress.from_bdf("0000:01:00.0")), enabled=False)
    )
    assert (pf_dir / "sriov_drivers_autoprobe").read_text() == "0"
    [entry] = journal.pending()
    assert (entry.kind, entry.owner, entry.change) == (
        "sriov_drivers_autoprobe",
        owner,
        {"device": "0000:01:00.0", "before": True, "enabled": False},
    )
    assert changes.undo(change) == "set 0000:01:00.0 sriov_drivers_autoprobe back to 1"
    assert (pf_dir / "sriov_drivers_autoprobe").read_text() == "1"
    assert journal.pending() == []


def _no_libvirt() -> object:
    raise AssertionError("this change must not need libvirt")
