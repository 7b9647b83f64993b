"""Detach / reattach cycles on allowlisted devices: nodedev-detach to vfio-pci and back, verified each step.

Only devices on the allowlist are touched, never host-critical ones; every change is journaled first
and undone if the run is interrupted. Each device is locked so that two xdist workers never share one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.devices import VFIO_DRIVER, DeviceChanger, current_driver
from harness.guard import DeviceGuard
from harness.host.events import PciEventWatcher
from harness.host.pci import nodedev_name
from harness.libvirt.facts import read_node_device
from harness.locks import device_lock
from harness.plugin import parametrize_allowlist
from harness.xml.domain import DomainType
from suites.steps import RecordProperty, managed_guest_cycle, permitted

pytestmark = pytest.mark.harness_destructive


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "address" in metafunc.fixturenames:
        parametrize_allowlist(metafunc, "address")


def test_detach_reattach_cycle(
    address: str,
    harness_guard: DeviceGuard,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    device = permitted(address, harness_guard, record_property)
    # Refusal comes first, so it is reported even where nothing could be changed (a snapshot).
    harness_changer: DeviceChanger = request.getfixturevalue("harness_changer")
    with device_lock(device.address):
        try:
            _cycle(device.address, device.iommu_group, harness_changer, record_property)
        finally:
            # A failed step must not leave the device on vfio-pci for the tests after this one.
            harness_changer.restore_pending(device.address)


def _cycle(
    address: str,
    group: int | None,
    changer: DeviceChanger,
    record_property: Callable[[str, object], None],
) -> None:
    root = changer.root
    name = nodedev_name(address)
    before = current_driver(root, address)
    record_property("harness.driver_before", before or "none")
    with PciEventWatcher(address) as events:
        changer.detach(address)
        if before is not None:
            assert events.wait_for("unbind"), (
                f"no unbind uevent for {address} during nodedev-detach; saw {events.seen()}"
            )
        assert events.wait_for("bind", VFIO_DRIVER), (
            f"no bind uevent to {VFIO_DRIVER} for {address} during nodedev-detach; saw {events.seen()}"
        )
    view = read_node_device(changer.connection.nodeDeviceLookupByName(name).XMLDesc(0))
    assert view.driver == VFIO_DRIVER, (
        f"libvirt after detach: expected driver {VFIO_DRIVER}, found {view.driver}; "
        f"reproduce: virsh nodedev-dumpxml {name}"
    )
    assert view.iommu_group == group, f"IOMMU group changed across detach: {group} -> {view.iommu_group}"
    with PciEventWatcher(address) as events:
        changer.reattach(address)
        if before is not None:
            assert events.wait_for("bind", before), (
                f"no bind uevent to {before} for {address} during nodedev-reattach; saw {events.seen()}"
            )
    after = current_driver(root, address)
    assert after == before, (
        f"after nodedev-reattach {address}: expected driver {before}, found {after}; "
        f"reproduce: virsh nodedev-reattach {name}"
    )


def test_managed_hostdev_guest_takes_and_returns_the_device(
    address: str,
    harness_guard: DeviceGuard,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    record_property: RecordProperty,
) -> None:
    """<hostdev managed='yes'>: libvirt detaches at guest start and reattaches when the guest is destroyed."""
    device = permitted(address, harness_guard, record_property)
    changer: DeviceChanger = request.getfixturevalue("harness_changer")
    with device_lock(device.address):
        managed_guest_cycle(changer, device.address, harness_guest_type, record_property)
