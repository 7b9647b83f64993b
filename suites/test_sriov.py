"""SR-IOV: VFs made on an allowlisted PF appear in sysfs and in libvirt, can be assigned, and go away.

VFs are made with sriov_drivers_autoprobe off, as for VFs meant for guests: they get no host driver and
so no netdev. On a NIC PF they are made again with autoprobe on: the VF driver (igbvf) binds and each VF has
a netdev that libvirt lists under the VF. (An NVMe VF needs its secondary controller online first, so
autoprobe on is tried on NICs only.) The VF count and the autoprobe setting are journaled and put back
even when a step fails; libvirt lists no VFs once the count is back to 0.
"""

from __future__ import annotations

import time

import libvirt
import pytest
from lxml import etree

from harness.changes.guard import DeviceGuard
from harness.changes.leases import GroupLeases
from harness.changes.protocol import HostChanges
from harness.changes.sriov import VfAutoprobe, VfCount
from harness.host.drivers import current_driver
from harness.host.host import Host
from harness.host.netdevs import netdev_names
from harness.host.pci import PciDevice
from harness.host.sysfs import pci_path
from harness.plugin.devices import allowlist, collected_devices
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
    allowed = set(allowlist(metafunc.config))
    pfs = [
        d.address
        for d in collected_devices(metafunc.config).values()
        if d.address in allowed and d.is_sriov_pf
    ]
    reason = "no allowlisted SR-IOV PF (--harness-allow a device with sriov_totalvfs > 0)"
    metafunc.parametrize(
        "pf_address",
        pfs or [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
        ids=[a.bdf for a in pfs] or None,
    )


def _libvirt_vfs(changes: HostChanges, pf: PciAddress) -> tuple[PciAddress, ...]:
    pf_xml = NodeDevice.parse(changes.connection.nodeDeviceLookupByName(pf.nodedev_name).XMLDesc(0))
    functions = pf_xml.capability.virt_functions
    return functions.addresses if functions else ()


def _wait_for_libvirt_vfs(changes: HostChanges, pf: PciAddress, vfs: tuple[PciAddress, ...]) -> None:
    """libvirt learns of VFs (and of their removal) through udev: wait until it lists what sysfs has."""
    deadline = time.monotonic() + LIBVIRT_SEES_VFS_WITHIN
    while sorted(_libvirt_vfs(changes, pf)) != sorted(vfs) and time.monotonic() < deadline:
        time.sleep(0.5)
    listed = _libvirt_vfs(changes, pf)
    assert sorted(listed) == sorted(vfs), (
        f"libvirt lists VFs {[str(a) for a in listed]} under {pf.nodedev_name}, sysfs has "
        f"{[str(a) for a in vfs]} (is udevd running?); reproduce: virsh nodedev-dumpxml {pf.nodedev_name}"
    )


def _libvirt_netdevs(changes: HostChanges, vf: PciAddress) -> list[str]:
    """Interfaces libvirt lists with the VF as their parent (``virsh nodedev-list --cap net``)."""
    flags = libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET
    return sorted(
        etree.fromstring(d.XMLDesc(0).encode()).findtext("capability[@type='net']/interface") or d.name()
        for d in changes.connection.listAllDevices(flags)
        if d.parent() == vf.nodedev_name
    )


def _vfs_with_autoprobe_on(changes: HostChanges, pf: PciDevice, host: Host, log: StepLog) -> None:
    """A NIC's VFs made with autoprobe on: a VF driver binds and each VF has a netdev libvirt lists."""
    for change in (VfAutoprobe.of(changes.root, pf, enabled=True), VfCount.of(changes.root, pf, VF_COUNT)):
        with log.step(change.kind, change.reproduce()):
            changes.make(change)
    host.refresh_devices()
    vfs = host.pci.get(pf.address).virtfns
    _wait_for_libvirt_vfs(changes, pf.address, vfs)
    for vf in vfs:
        driver = _wait_for_netdev(changes, vf)
        names = netdev_names(changes.root, vf)
        assert driver and names, (
            f"{vf} with autoprobe on: expected a VF driver and a netdev, found driver {driver or 'none'} and "
            f"netdevs {list(names)} (ls -l {pci_path(vf, 'driver')} {pci_path(vf, 'net')})"
        )
        log.record_property(f"harness.vf_netdev.{vf}", f"{driver} {' '.join(names)}")
        deadline = time.monotonic() + LIBVIRT_SEES_VFS_WITHIN
        while _libvirt_netdevs(changes, vf) != list(names) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _libvirt_netdevs(changes, vf) == list(names), (
            f"libvirt lists interfaces {_libvirt_netdevs(changes, vf)} under {vf.nodedev_name}, sysfs has "
            f"{list(names)}; reproduce: virsh nodedev-list --cap net; virsh nodedev-dumpxml net_{names[0]}_..."
        )


def _wait_for_netdev(changes: HostChanges, vf: PciAddress) -> str | None:
    """The VF's driver once it has bound and made its netdev (None if neither happened in time)."""
    deadline = time.monotonic() + LIBVIRT_SEES_VFS_WITHIN
    while current_driver(changes.root, vf) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    while not netdev_names(changes.root, vf) and time.monotonic() < deadline:
        time.sleep(0.1)  # the driver's probe makes the netdev a moment after it binds
    return current_driver(changes.root, vf)


def test_vfs_are_made_listed_assigned_and_removed(
    pf_address: PciAddress,
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
            assert len(vfs) == VF_COUNT, (
                f"{pf.address}: expected {VF_COUNT} virtfn links, found {[str(vf) for vf in vfs]}"
            )
            for vf in vfs:
                device = host.pci.get(vf)
                assert device.physfn == pf.address, f"{vf}: physfn {device.physfn}, expected {pf.address}"
                assert device.iommu_group is not None and device.iommu_group != pf.iommu_group, (
                    f"{vf} should have an IOMMU group of its own; PF group {pf.iommu_group}, VF {device.iommu_group}"
                )
            _wait_for_libvirt_vfs(changes, pf.address, vfs)
            for vf in vfs:
                vf_xml = NodeDevice.parse(
                    changes.connection.nodeDeviceLookupByName(vf.nodedev_name).XMLDesc(0)
                )
                phys, group = vf_xml.capability.phys_function, vf_xml.capability.iommu_group
                found = (phys, group.number if group else None)
                expected = (pf.address, host.pci.get(vf).iommu_group)
                assert found == expected, (
                    f"{vf_xml.name}: expected phys_function and IOMMU group {expected} (sysfs), libvirt says "
                    f"{found}; reproduce: virsh nodedev-dumpxml {vf_xml.name}"
                )
            vf_device = host.pci.get(vfs[0])
            with harness_leases.hold([vf_device]):
                managed_guest_cycle(changes, vf_device, harness_guest_type, log)
            is_nic = bool(netdev_names(changes.root, pf.address))  # NVMe VFs stay: no autoprobe-on part
            for vf in vfs:
                assert not netdev_names(changes.root, vf), (
                    f"{vf} has netdevs {netdev_names(changes.root, vf)} although autoprobe is off "
                    f"(ls {pci_path(vf, 'net')}; cat {pf.sys_path}/sriov_drivers_autoprobe)"
                )
            if is_nic and count.before == 0:
                with log.step("remove_vfs", f"echo 0 > {pf.sys_path}/sriov_numvfs"):
                    changes.undo(count)
                _wait_for_libvirt_vfs(changes, pf.address, ())
                _vfs_with_autoprobe_on(changes, pf, host, log)
        finally:
            for made in reversed(list(changes.made)):
                if made.change.kind in (VfCount.kind, VfAutoprobe.kind) and made.change.touches() == (
                    count.device,
                ):
                    changes.undo(made.change)
            host.refresh_devices()
        after = host.pci.get(pf.address)
        assert after.sriov_numvfs == count.before, (
            f"{pf.address}: sriov_numvfs {after.sriov_numvfs}, expected {count.before} again"
        )
        if count.before == 0:
            _wait_for_libvirt_vfs(changes, pf.address, ())
