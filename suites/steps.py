"""Steps the assignment suites share: the guard's word on a device, and a guest that takes a device."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.devices import VFIO_DRIVER, DeviceChanger, current_driver, wait_for_driver
from harness.guard import DeviceGuard, DeviceRefusedError
from harness.host.pci import PciDevice, nodedev_name
from harness.libvirt.guests import destroy_guest, guest_with_hostdevs, start_guest
from harness.xml.address import PciAddress
from harness.xml.domain import Domain, DomainType
from harness.xml.hostdev import PciHostdev

RecordProperty = Callable[[str, object], None]


def permitted(address: str, guard: DeviceGuard, record_property: RecordProperty) -> PciDevice:
    """The device if the guard lets the harness change it; a refusal fails the test and changes nothing."""
    try:
        return guard.permit(address)
    except DeviceRefusedError as exc:
        record_property("harness.refused", str(exc))
        pytest.fail(str(exc), pytrace=False)


def managed_guest_cycle(
    changer: DeviceChanger, address: str, guest_type: DomainType, record_property: RecordProperty
) -> None:
    """<hostdev managed='yes'>: vfio-pci while a throwaway guest runs, the old driver once it is gone."""
    source = PciAddress.from_bdf(address)
    guest = guest_with_hostdevs((PciHostdev(source=source, managed=True),), guest_type)
    record_property("harness.guest", guest.name)
    before = current_driver(changer.root, address)
    try:
        domain = start_guest(changer.connection, guest, changer.journal)
        found = current_driver(changer.root, address)
        assert found == VFIO_DRIVER, (
            f"guest {guest.name} running: expected {address} on {VFIO_DRIVER}, found {found}; "
            f"reproduce: virsh create <xml with the hostdev>; virsh nodedev-dumpxml {nodedev_name(address)}"
        )
        live = Domain.parse(domain.XMLDesc(0))
        sources = [d.source for d in live.devices if isinstance(d, PciHostdev)]
        assert source in sources, f"live XML of {guest.name} lacks hostdev {source}: has {sources}"
        destroy_guest(changer.connection, guest.name)
        after = wait_for_driver(changer.root, address, before)
        assert after == before, (
            f"after destroying {guest.name}: expected {address} back on {before}, found {after}"
        )
    finally:
        changer.restore_pending(guest.name)
