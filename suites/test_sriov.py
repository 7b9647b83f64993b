"""SR-IOV: VFs made on an allowlisted PF appear in sysfs and in libvirt, can be assigned, and go away.

VFs are made with sriov_drivers_autoprobe off, as for VFs meant for guests; the VF count and the
autoprobe setting are journaled and put back even when a step fails.
"""

from __future__ import annotations

import time

import pytest

from harness.changes import HostChanges
from harness.devices import VfAutoprobe, VfCount
from harness.guard import DeviceGuard
from harness.host.pci import enumerate_pci, nodedev_name
from harness.host.root import HostRoot
from harness.leases import GroupLeases
from harness.plugin import allowlist
from harness.xml.address import PciAddress
from harness.xml.domain import DomainType
from harness.xml.nodedev import NodeDevice
from suites.steps import StepLog, managed_guest_cycle, permitted

pytestmark = pytest.mark.harness_destructive
VF_COUNT = 2
LIBVIRT_SEES_VFS_WITHIN = 30.0  # libvirt learns of new VFs through udev


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pf_address" not in metafunc.fixturenames:
        return
    root = HostRoot(metafunc.config.getoption("harness_snapshot") or "/")
    allowed = set(allowlist(metafunc.config))
    pfs = [d.address for d in enumerate_pci(root) if d.address in allowed and d.is_sriov_pf]
    reason = "no allowlisted SR-IOV PF (--harness-allow a device with sriov_totalvfs > 0)"
    metafunc.parametrize("pf_address", pfs or [pytest.param(None, marks=pytest.mark.skip(reason=reason))])


def _libvirt_vfs(changes: HostChanges, pf: str) -> tuple[str, ...]:
    pf_xml = NodeDevice.parse(changes.connection.nodeDeviceLookupByName(nodedev_name(pf)).XMLDesc(0))
    functions = pf_xml.capability.virt_functions
    return tuple(a.bdf for a in functions.addresses) if functions else ()


def test_vfs_are_made_listed_assigned_and_removed(
    pf_address: str,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    pf = permitted(pf_address, harness_guard, log.record_property)
    changes: HostChanges = request.getfixturevalue("harness_changes")
    host = harness_guard.host
    with harness_leases.hold([pf]):
        autoprobe = VfAutoprobe.of(changes.root, pf, enabled=False)
        count = VfCount.of(changes.root, pf, VF_COUNT)
        log.record_property("harness.sriov_numvfs_before", count.before)
        try:
            with log.step("autoprobe_off", autoprobe.reproduce()):
                changes.make(autoprobe)
            with log.step("make_vfs", count.reproduce()):
                changes.make(count)
            host.refresh_devices()
            vfs = host.pci.get(pf.address).virtfns
            assert len(vfs) == VF_COUNT, f"{pf.address}: expected {VF_COUNT} virtfn links, found {vfs}"
            for vf in vfs:
                device = host.pci.get(vf)
                assert device.physfn == pf.address, f"{vf}: physfn {device.physfn}, expected {pf.address}"
                assert device.iommu_group is not None and device.iommu_group != pf.iommu_group, (
                    f"{vf} should have an IOMMU group of its own; PF group {pf.iommu_group}, VF {device.iommu_group}"
                )
            deadline = time.monotonic() + LIBVIRT_SEES_VFS_WITHIN
            while sorted(_libvirt_vfs(changes, pf.address)) != sorted(vfs) and time.monotonic() < deadline:
                time.sleep(0.5)
            listed = _libvirt_vfs(changes, pf.address)
            assert sorted(listed) == sorted(vfs), (
                f"libvirt lists VFs {listed} under {nodedev_name(pf.address)}, sysfs has {vfs} (is udevd running?); "
                f"reproduce: virsh nodedev-dumpxml {nodedev_name(pf.address)}"
            )
            vf_xml = NodeDevice.parse(
                changes.connection.nodeDeviceLookupByName(nodedev_name(vfs[0])).XMLDesc(0)
            )
            phys = vf_xml.capability.phys_function
            assert phys == PciAddress.from_bdf(pf.address), (
                f"{vf_xml.name}: phys_function {phys}, expected {pf.address}"
            )
            vf_device = host.pci.get(vfs[0])
            with harness_leases.hold([vf_device]):
                managed_guest_cycle(changes, vf_device, harness_guest_type, log)
        finally:
            for change in (count, autoprobe):
                if any(made.change is change for made in changes.made):
                    changes.undo(change)
            host.refresh_devices()
        after = host.pci.get(pf.address)
        assert after.sriov_numvfs == count.before, (
            f"{pf.address}: sriov_numvfs {after.sriov_numvfs}, expected {count.before} again"
        )
