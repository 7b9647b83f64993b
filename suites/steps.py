"""Steps the assignment suites share: the guard's word on a device, a timed log of virsh-equivalent steps,
the guest's own view of its PCI tree, and a guest that takes a device and gives it back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import libvirt
import pytest

from harness.changes.guard import DeviceGuard, DeviceRefusedError
from harness.changes.guests import GuestChange, GuestStartError, TransientGuest
from harness.changes.leases import GroupLeases
from harness.changes.protocol import HostChanges
from harness.host.drivers import VFIO_DRIVER, current_driver, wait_for_driver
from harness.host.pci import PciDevice
from harness.host.sysfs import pci_path
from harness.inventory import no_group_reason
from harness.libvirt.guests import guest_with_hostdevs, qemu_pci_devices
from harness.xml.address import PciAddress
from harness.xml.domain import Domain, DomainType
from harness.xml.hostdev import PciHostdev

RecordProperty = Callable[[str, object], None]


def permitted(address: PciAddress, guard: DeviceGuard, record_property: RecordProperty) -> PciDevice:
    """The device if the guard lets the harness change it; a refusal fails the test and changes nothing.

    Without an IOMMU group nothing can be assigned: the test skips, naming why (the preparation checks
    are where that FAILs, with the fix)."""
    try:
        device = guard.permit(address)
    except DeviceRefusedError as exc:
        record_property("harness.refused", str(exc))
        pytest.fail(str(exc), pytrace=False)
    if device.iommu_group is None and guard.host.root.is_live:
        pytest.skip(
            f"{device.address} {no_group_reason(guard.host, device)}, so it cannot be assigned "
            "(see test_preparation[iommu_firmware] and [iommu_kernel])"
        )
    return device


@contextmanager
def held(
    address: PciAddress, guard: DeviceGuard, leases: GroupLeases, request: pytest.FixtureRequest, log: StepLog
) -> Iterator[tuple[PciDevice, HostChanges, str | None]]:
    """The allowlisted device (a refusal fails the test, nothing changed), its IOMMU group leased for the
    block, the changes fixture, and the host driver it had before."""
    device = permitted(address, guard, log.record_property)
    # Refusal comes first, so it is reported even where nothing could be changed (a snapshot).
    changes: HostChanges = request.getfixturevalue("harness_changes")
    with leases.hold([device]):
        yield device, changes, current_driver(changes.root, device.address)


@dataclass
class StepLog:
    """The steps a test took, each with the virsh command that does it by hand and how long it took."""

    record_property: RecordProperty
    commands: list[str] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str, command: str) -> Iterator[None]:
        self.commands.append(command)
        started = time.perf_counter()
        yield
        self.seconds.setdefault(name, []).append(time.perf_counter() - started)

    def publish(self) -> None:
        self.record_property("harness.virsh", "\n".join(self.commands))
        for name, times in self.seconds.items():
            self.record_property(f"harness.seconds.{name}", f"{sum(times) / len(times):.3f}")

    def reproduce(self) -> str:
        return "reproduce: " + "; ".join(self.commands[-4:])


def guest_pci_ids(domain: libvirt.virDomain) -> list[tuple[int, int]]:
    """(vendor, device) of every PCI function in the guest, as the guest's QEMU reports its PCI tree."""
    return [(d["id"]["vendor"], d["id"]["device"]) for d in qemu_pci_devices(domain)]


def assert_guest_has(domain: libvirt.virDomain, device: PciDevice, log: StepLog) -> None:
    """The device is really in the guest: its vendor/device ids are on the guest's own PCI bus."""
    wanted = (int(device.vendor_id, 16), int(device.device_id, 16))
    found = guest_pci_ids(domain)
    assert wanted in found, (
        f"guest {domain.name()}: expected {device.address} ({device.vendor_id}:{device.device_id}) on its PCI "
        f"bus, found {[f'{v:04x}:{d:04x}' for v, d in found]}; reproduce: virsh qemu-monitor-command "
        f'{domain.name()} --pretty \'{{"execute":"query-pci"}}\''
    )
    log.record_property("harness.guest_pci", " ".join(f"{v:04x}:{d:04x}" for v, d in found))


def assert_driver(
    changes: HostChanges, device: PciDevice | PciAddress, expected: str | None, when: str
) -> None:
    address = device.address if isinstance(device, PciDevice) else device
    found = wait_for_driver(changes.root, address, expected)
    assert found == expected, (
        f"{when}: expected {address} on {expected or 'no driver'}, found {found or 'no driver'} "
        f"(look at {pci_path(address, 'driver')}; virsh nodedev-dumpxml {address.nodedev_name})"
    )


def hostdev(device: PciDevice, *, managed: bool) -> PciHostdev:
    return PciHostdev(source=device.address, managed=managed)


def throwaway_guest(devices: tuple[PciHostdev, ...], guest_type: DomainType) -> Domain:
    return guest_with_hostdevs(devices, guest_type)


def managed_guest_cycle(
    changes: HostChanges, device: PciDevice, guest_type: DomainType, log: StepLog
) -> None:
    """<hostdev managed='yes'>: on vfio-pci and on the guest's bus while it runs, the old driver after."""
    before = current_driver(changes.root, device.address)
    guest = TransientGuest.of(throwaway_guest((hostdev(device, managed=True),), guest_type))
    log.record_property("harness.guest", guest.name)
    with log.step(
        "start_managed", f"virsh create {guest.name}.xml  # <hostdev managed='yes'> {device.address}"
    ):
        changes.make(guest)
    try:
        assert_driver(changes, device, VFIO_DRIVER, f"guest {guest.name} running")
        domain = guest.domain(changes.context)
        live = Domain.parse(domain.XMLDesc(0))
        sources = [d.source for d in live.devices if isinstance(d, PciHostdev)]
        assert device.address in sources, (
            f"live XML of {guest.name} lacks hostdev {device.address}: has {sources}; "
            f"reproduce: virsh dumpxml {guest.name}"
        )
        assert_guest_has(domain, device, log)
    finally:
        with log.step("destroy", f"virsh destroy {guest.name}"):
            changes.undo(guest)
    assert_driver(changes, device, before, f"after destroying {guest.name}")


def libvirt_error_name(code: int) -> str:
    """libvirt's name for an error code (``VIR_ERR_OPERATION_INVALID``), as its documentation spells it."""
    names = (name for name in dir(libvirt) if name.startswith("VIR_ERR_") and getattr(libvirt, name) == code)
    return next(names, str(code))


def refused_start(
    changes: HostChanges,
    guest: GuestChange,
    log: StepLog,
    *,
    step: str,
    command: str,
    says: str,
    expected: str | None = None,
    code: int | None = None,
) -> GuestStartError:
    """Start a guest that libvirt must refuse, and check libvirt's own error (its code and words):
    ``says`` must be in its message (``expected``, when given, is the whole message a person would see).

    Returns libvirt's error; whether anything changed is the caller's to check."""
    with pytest.raises(GuestStartError) as refused, log.step(step, command):
        changes.make(guest)
    error = refused.value
    log.record_property("harness.libvirt_error", error.libvirt_message)
    wanted_code = f" ({libvirt_error_name(code)})" if code is not None else ""
    assert (code is None or error.code == code) and says in error.libvirt_message, (
        f"expected libvirt's {expected or says!r}{wanted_code}, got {libvirt_error_name(error.code)}: "
        f"{error.libvirt_message}; reproduce: {command}"
    )
    return error
