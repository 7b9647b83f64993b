"""Device inventory: every PCI device with its libvirt name, driver, group and assignability.

Each device test checks that libvirt's node device agrees with sysfs (name, driver, IOMMU group):
the two views disagreeing is what breaks a managed hostdev. The verdict travels as JUnit properties.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.changes.guard import DeviceGuard
from harness.host.host import Host
from harness.inventory import assess_device
from harness.opening import open_host
from harness.plugin.devices import parametrize_allowlist
from harness.plugin.options import options
from harness.report.properties import device_properties
from harness.xml.address import PciAddress


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_address" in metafunc.fixturenames:
        # Opened as the harness_host fixture opens it (the plugin has checked the snapshot already).
        with open_host(options(metafunc.config).snapshot) as host:
            addresses = [device.address for device in host.pci]
        metafunc.parametrize("device_address", addresses, ids=[a.nodedev_name for a in addresses])
    if "allowed_address" in metafunc.fixturenames:
        parametrize_allowlist(metafunc, "allowed_address")


def test_device(
    device_address: PciAddress, harness_host: Host, record_property: Callable[[str, object], None]
) -> None:
    device = harness_host.pci.get(device_address)
    assessment = assess_device(harness_host, device)
    for name, value in device_properties(assessment):
        record_property(name, value)
    libvirt = harness_host.libvirt
    if not libvirt.reachable:
        pytest.skip(
            f"libvirt not reachable ({libvirt.error}): sysfs view recorded, libvirt view not compared"
        )
    view = libvirt.node_devices.get(device.nodedev_name)
    assert view is not None, (
        f"libvirt has no node device {device.nodedev_name} for {device.address}; "
        f"reproduce: virsh nodedev-list --cap pci"
    )
    assert view.driver == device.driver, (
        f"driver of {device.address}: sysfs says {device.driver}, libvirt says {view.driver}; "
        f"reproduce: virsh nodedev-dumpxml {device.nodedev_name}"
    )
    assert view.iommu_group == device.iommu_group, (
        f"IOMMU group of {device.address}: sysfs says {device.iommu_group}, libvirt says {view.iommu_group}"
    )
    if device.iommu_group is not None:
        expected = sorted(a.nodedev_name for a in assessment.group_members)
        assert sorted(view.iommu_group_members) == expected, (
            f"members of IOMMU group {device.iommu_group}: sysfs {expected}, libvirt {sorted(view.iommu_group_members)}"
        )


def test_allowed_device_is_assignable(
    allowed_address: PciAddress,
    harness_host: Host,
    harness_guard: DeviceGuard,
    record_property: Callable[[str, object], None],
) -> None:
    """A device the user wants to assign must be one the harness may touch, and assignable."""
    record_property("harness.allowed", str(allowed_address))
    refusal = harness_guard.refusal(allowed_address)
    if refusal is not None:
        pytest.fail(f"refused: {refusal}; nothing was changed", pytrace=False)
    assessment = assess_device(harness_host, harness_host.pci.get(allowed_address))
    if assessment.assignable:
        return
    # A shared group whose every endpoint is allowlisted goes as a whole (test_assignment's group test).
    group = harness_host.pci.group_of(assessment.device)
    endpoints = [m.address for m in group.members if not m.is_bridge] if group else []
    allowed = set(harness_guard.allowlist)
    only_the_group = all(
        reason.startswith(f"IOMMU group {assessment.device.iommu_group} is not viable")
        for reason in assessment.reasons
    )
    if group is not None and only_the_group and set(endpoints) <= allowed:
        record_property("harness.assign_as_group", " ".join(map(str, endpoints)))
        return
    pytest.fail(f"{allowed_address} cannot be assigned: {assessment.explain()}", pytrace=False)
