"""Detach / reattach cycles on allowlisted devices: nodedev-detach to vfio-pci and back, verified each step.

Only devices on the allowlist are touched, never host-critical ones; every change is journaled first
and undone if the run is interrupted. Each device is locked so that two xdist workers never share one.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt
import pytest

from harness.devices import VFIO_DRIVER, DeviceChanger, current_driver
from harness.guard import DeviceGuard, DeviceRefusedError
from harness.host.pci import nodedev_name
from harness.libvirt.facts import read_node_device
from harness.locks import device_lock
from harness.plugin import allowlist

pytestmark = pytest.mark.harness_destructive


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "address" in metafunc.fixturenames:
        allowed = allowlist(metafunc.config)
        metafunc.parametrize(
            "address",
            allowed
            or [pytest.param(None, marks=pytest.mark.skip(reason="no device allowlisted (--harness-allow)"))],
        )


def test_detach_reattach_cycle(
    address: str,
    harness_guard: DeviceGuard,
    request: pytest.FixtureRequest,
    harness_libvirt: libvirt.virConnect,
    record_property: Callable[[str, object], None],
) -> None:
    try:
        device = harness_guard.permit(address)
    except DeviceRefusedError as exc:
        record_property("harness.refused", str(exc))
        pytest.fail(str(exc), pytrace=False)
    # Refusal comes first, so it is reported even where nothing could be changed (a snapshot).
    harness_changer: DeviceChanger = request.getfixturevalue("harness_changer")
    root = harness_guard.host.root
    name = nodedev_name(device.address)
    with device_lock(device.address):
        before = current_driver(root, device.address)
        record_property("harness.driver_before", before or "none")
        harness_changer.detach(device.address)
        view = read_node_device(harness_libvirt.nodeDeviceLookupByName(name).XMLDesc(0))
        assert view.driver == VFIO_DRIVER, (
            f"libvirt after detach: expected driver {VFIO_DRIVER}, found {view.driver}; "
            f"reproduce: virsh nodedev-dumpxml {name}"
        )
        assert view.iommu_group == device.iommu_group, (
            f"IOMMU group changed across detach: {device.iommu_group} -> {view.iommu_group}"
        )
        harness_changer.reattach(device.address)
        after = current_driver(root, device.address)
        assert after == before, (
            f"after nodedev-reattach {device.address}: expected driver {before}, found {after}; "
            f"reproduce: virsh nodedev-reattach {name}"
        )
