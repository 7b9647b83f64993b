"""Live attach and detach of allowlisted devices into a running guest, proved by the guest itself.

One answering guest per module (the lab's Debian kernel with a busybox initramfs that prints its PCI tree
on its serial console, see :mod:`harness.lab.guest_image`) starts with the module; the tests that need no
guest OS run first, while it boots. A live attach counts when libvirt's live XML has the device, the guest
lists its vendor:device, and the host driver is vfio-pci; a live detach when libvirt's DEVICE_REMOVED event
arrived, the live XML and the guest lost it, and (managed) the host driver is back.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libvirt
import pytest

from harness.changes import HostChanges
from harness.devices import VFIO_DRIVER, DriverDetach, VfAutoprobe, VfCount, current_driver, wait_for_driver
from harness.guard import DeviceGuard
from harness.host.pci import PciDevice, enumerate_pci, nodedev_name
from harness.host.root import HostRoot
from harness.leases import GroupLeases
from harness.libvirt.guests import TransientGuest, guest_with_hostdevs
from harness.libvirt.hotplug import (
    REMOVAL_TIMEOUT_S,
    AnsweringGuest,
    DetachOutcome,
    DeviceEvents,
    GuestConsole,
    GuestPciReport,
    hostdev_xml,
    live_hostdev_sources,
    open_fd_count,
    qemu_pid,
    vfio_nodes,
)
from harness.plugin import allowlist
from harness.xml.address import PciAddress
from harness.xml.domain import DomainType
from harness.xml.guest import GuestMachine, q35_root_ports
from harness.xml.hostdev import PciHostdev
from suites.steps import RecordProperty, permitted

pytestmark = pytest.mark.harness_destructive

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
GUEST_BOOT_TIMEOUT_S = 400.0  # TCG inside TCG on a busy 2-core machine: measured 115-160 s
GUEST_SEES_WITHIN_S = 60.0
# libvirt gives up waiting for the unplug after 5 s; a guest with no OS never acknowledges it.
HELD_CHECK_S = 10.0
LEAK_CYCLES = 3


@dataclass(frozen=True)
class HotplugDevice:
    """A device to hotplug: its host address and the vendor:device the guest will list."""

    role: str  # "pf" (a whole function) or "vf"
    address: str
    pci_id: str
    device: PciDevice


def _pci_id(root: HostRoot, address: str) -> str:
    base = f"/sys/bus/pci/devices/{address}"
    vendor, device = (root.read_stripped(f"{base}/{name}") or "" for name in ("vendor", "device"))
    return f"{vendor.removeprefix('0x')}:{device.removeprefix('0x')}"


def _candidates(config: pytest.Config) -> tuple[str | None, str | None]:
    """The first allowlisted non-SR-IOV device (the whole-function case) and the first SR-IOV PF (for VFs)."""
    root = HostRoot(config.getoption("harness_snapshot") or "/")
    allowed = allowlist(config)
    devices = {d.address: d for d in enumerate_pci(root) if d.address in allowed}
    plain = next((a for a in allowed if a in devices and not devices[a].is_sriov_pf), None)
    sriov = next((a for a in allowed if a in devices and devices[a].is_sriov_pf), None)
    return plain, sriov


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "role" not in metafunc.fixturenames:
        return
    plain, sriov = _candidates(metafunc.config)
    params = [
        pytest.param("pf", id="pf")
        if plain
        else pytest.param("pf", id="pf", marks=pytest.mark.skip(reason="no allowlisted non-SR-IOV device")),
        pytest.param("vf", id="vf")
        if sriov
        else pytest.param("vf", id="vf", marks=pytest.mark.skip(reason="no allowlisted SR-IOV PF")),
    ]
    metafunc.parametrize("role", params)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def booted_guest(
    harness_answering_guest: AnsweringGuest, record_testsuite_property: RecordProperty
) -> AnsweringGuest:
    """The session's answering guest, once it printed its first PCI report."""
    harness_answering_guest.wait_booted(GUEST_BOOT_TIMEOUT_S)
    record_testsuite_property("harness.guest_boot_s", harness_answering_guest.boot_s)
    return harness_answering_guest


@pytest.fixture(scope="module")
def vf_source(
    harness_changes: HostChanges,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    pytestconfig: pytest.Config,
) -> Iterator[str]:
    """One VF of the first allowlisted SR-IOV PF, made for this module (autoprobe off) and removed after."""
    _, address = _candidates(pytestconfig)
    if address is None:
        pytest.skip("no allowlisted SR-IOV PF")
    host = harness_guard.host
    pf = harness_guard.permit(address)
    with (
        harness_leases.hold([pf]),
        harness_changes.holding(VfAutoprobe.of(harness_changes.root, pf, enabled=False)),
        harness_changes.holding(VfCount.of(harness_changes.root, pf, 1)),
    ):
        host.refresh_devices()
        vfs = host.pci.get(pf.address).virtfns
        assert len(vfs) == 1, f"{pf.address}: expected 1 VF after sriov_numvfs=1, found {vfs}"
        yield vfs[0]
    host.refresh_devices()


def _hotplug_device(
    role: str, address: str | None, guard: DeviceGuard, leases: GroupLeases, record_property: RecordProperty
) -> Iterator[HotplugDevice]:
    if address is None:
        pytest.skip(f"no allowlisted device for the {role} case")
    device: PciDevice = permitted(address, guard, record_property)
    record_property("harness.device", f"{role} {device.address}")
    with leases.hold([device]):
        yield HotplugDevice(role, device.address, _pci_id(guard.host.root, device.address), device)


@pytest.fixture
def hotplug_device(
    role: str,
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    record_property: RecordProperty,
) -> Iterator[HotplugDevice]:
    """The device of this test's role: the plain allowlisted device (pf) or the module's VF (vf)."""
    address = request.getfixturevalue("vf_source") if role == "vf" else _candidates(pytestconfig)[0]
    yield from _hotplug_device(role, address, harness_guard, harness_leases, record_property)


@pytest.fixture
def pf_device(
    pytestconfig: pytest.Config,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    record_property: RecordProperty,
) -> Iterator[HotplugDevice]:
    yield from _hotplug_device(
        "pf", _candidates(pytestconfig)[0], harness_guard, harness_leases, record_property
    )


@pytest.fixture
def vf_device(
    request: pytest.FixtureRequest,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    record_property: RecordProperty,
) -> Iterator[HotplugDevice]:
    yield from _hotplug_device(
        "vf", request.getfixturevalue("vf_source"), harness_guard, harness_leases, record_property
    )


# --- steps ---------------------------------------------------------------------------------------
def _reproduce(domain: str, verb: str, flags: str) -> str:
    return f"reproduce: virsh {verb} {domain} hostdev.xml {flags} (the <hostdev> of this test)"


def _accepted(call: Callable[[], object], verb: str, device: HotplugDevice, domain: str) -> None:
    """A libvirt call that must succeed; its refusal fails the test with the virsh command to retry."""
    try:
        call()
    except libvirt.libvirtError as exc:
        pytest.fail(
            f"{verb} of {device.address} ({domain}) failed: {exc.get_error_message()}\n"
            f"{_reproduce(domain, verb, '--live')}",
            pytrace=False,
        )


def _attach(domain: libvirt.virDomain, device: HotplugDevice, *, managed: bool, flags: int = LIVE) -> str:
    """attach-device; returns the user alias the device carries. A refusal fails the test."""
    alias = f"ua-hotplug-{uuid.uuid4().hex[:8]}"
    xml = hostdev_xml(PciAddress.from_bdf(device.address), managed=managed, alias=alias)
    _accepted(lambda: domain.attachDeviceFlags(xml, flags), "attach-device", device, domain.name())
    return alias


def _prove_attached(
    guest: AnsweringGuest, device: HotplugDevice, root: HostRoot, record_property: RecordProperty
) -> GuestPciReport:
    source = PciAddress.from_bdf(device.address)
    live = live_hostdev_sources(guest.domain)
    assert source in live, (
        f"after attach-device --live: expected {source} in the live XML of {guest.name}, found {live}; "
        f"reproduce: virsh dumpxml {guest.name}"
    )
    report = guest.console.wait_for(lambda r: bool(r.bdfs_with_id(device.pci_id)), GUEST_SEES_WITHIN_S)
    latest = guest.console.latest()
    record_property("harness.guest_pci", str(latest))
    assert report is not None, (
        f"guest {guest.name} does not list {device.pci_id} ({device.address}) {GUEST_SEES_WITHIN_S:.0f}s after "
        f"attach-device; its PCI tree: {latest}\nconsole tail ({guest.console.path}):\n{guest.console.tail()}"
    )
    driver = current_driver(root, device.address)
    assert driver == VFIO_DRIVER, (
        f"{device.address} attached to {guest.name}: expected host driver {VFIO_DRIVER}, found {driver}; "
        f"reproduce: virsh nodedev-dumpxml {nodedev_name(device.address)}"
    )
    return report


def _detach(
    guest_domain: libvirt.virDomain,
    events: DeviceEvents,
    device: HotplugDevice,
    alias: str,
    *,
    managed: bool,
    console: GuestConsole | None,
    flags: int = LIVE,
    wait_s: float = REMOVAL_TIMEOUT_S,
) -> DetachOutcome:
    """detach-device, then collect what proves it: the event, the live XML, the guest's own tree."""
    name = guest_domain.name()
    started = time.monotonic()
    xml = hostdev_xml(PciAddress.from_bdf(device.address), managed=managed, alias=alias)
    _accepted(lambda: guest_domain.detachDeviceFlags(xml, flags), "detach-device", device, name)
    event = events.wait(name, alias, wait_s)
    in_live_xml = PciAddress.from_bdf(device.address) in live_hostdev_sources(guest_domain)
    still_sees: list[str] = []
    if console is not None:
        report = console.wait_for(
            lambda r: not r.bdfs_with_id(device.pci_id), GUEST_SEES_WITHIN_S if event else 0
        )
        latest = console.latest()
        still_sees = [] if report is not None else (latest.bdfs_with_id(device.pci_id) if latest else ["?"])
    return DetachOutcome(event, in_live_xml, still_sees, time.monotonic() - started)


def _noos_guest(
    virt_type: DomainType, *, hostdevs: tuple[PciHostdev, ...] = (), root_ports: int = 2
) -> GuestMachine:
    """A q35 guest with no OS (firmware only): cheap to start, never acknowledges an unplug."""
    controllers = q35_root_ports(root_ports)
    return GuestMachine(domain=guest_with_hostdevs(hostdevs, virt_type), controllers=controllers)


@contextlib.contextmanager
def _noos_running(changes: HostChanges, machine: GuestMachine) -> Iterator[libvirt.virDomain]:
    with changes.holding(TransientGuest(machine.name, machine.to_xml())) as guest:
        yield guest.domain(changes.context)


def _refused(call: Callable[[], object], what: str) -> libvirt.libvirtError:
    """The libvirt error ``call`` must raise; returning normally fails the test."""
    try:
        call()
    except libvirt.libvirtError as exc:
        return exc
    pytest.fail(f"{what}: libvirt accepted it, expected a refusal", pytrace=False)


# --- tests that need no guest OS (they run while the answering guest boots) -----------------------
def test_detach_from_a_guest_that_does_not_answer_is_reported_as_held(
    pf_device: HotplugDevice,
    harness_changes: HostChanges,
    harness_device_events: DeviceEvents,
    harness_guest_type: DomainType,
    record_property: RecordProperty,
) -> None:
    """libvirt says "Device detached successfully" after its 5 s wait even when the guest never acked:
    the harness must call that what it is, not a detach."""
    root = harness_changes.root
    before = current_driver(root, pf_device.address)
    machine = _noos_guest(harness_guest_type)
    with _noos_running(harness_changes, machine) as domain:
        alias = _attach(domain, pf_device, managed=True)
        outcome = _detach(
            domain, harness_device_events, pf_device, alias, managed=True, console=None, wait_s=HELD_CHECK_S
        )
        record_property(
            "harness.detach_outcome", outcome.explain(PciAddress.from_bdf(pf_device.address), machine.name)
        )
        assert outcome.held_by_guest and not outcome.proved, (
            f"a guest with no OS cannot acknowledge an unplug, yet the harness judged: {outcome}"
        )
        assert current_driver(root, pf_device.address) == VFIO_DRIVER, "the held device left vfio-pci"
    found = wait_for_driver(root, pf_device.address, before)
    assert found == before, (
        f"after destroying {machine.name}: expected {pf_device.address} on {before}, found {found}"
    )


def test_attach_of_a_device_another_guest_holds_is_refused(
    pf_device: HotplugDevice,
    harness_changes: HostChanges,
    harness_answering_guest: AnsweringGuest,
    harness_guest_type: DomainType,
) -> None:
    source = PciAddress.from_bdf(pf_device.address)
    holder = _noos_guest(harness_guest_type, hostdevs=(PciHostdev(source=source, managed=True),))
    with _noos_running(harness_changes, holder) as holder_domain:
        before = live_hostdev_sources(harness_answering_guest.domain)
        xml = hostdev_xml(source, managed=True, alias="ua-hotplug-taken")
        error = _refused(
            lambda: harness_answering_guest.domain.attachDeviceFlags(xml, LIVE),
            f"attach {source} to {harness_answering_guest.name} while {holder.name} holds it",
        )
        message = error.get_error_message()
        assert "in use" in message and holder.name in message, (
            f"expected libvirt to say {source} is in use by {holder.name}, it said: {message}"
        )
        assert live_hostdev_sources(harness_answering_guest.domain) == before, (
            "the refused attach changed the live XML"
        )
        assert source in live_hostdev_sources(holder_domain), f"{holder.name} lost {source} after the refusal"
        assert current_driver(harness_changes.root, pf_device.address) == VFIO_DRIVER


def test_attach_into_a_full_bus_fails_clearly(
    pf_device: HotplugDevice, harness_changes: HostChanges, harness_guest_type: DomainType
) -> None:
    """q35 hotplug needs an empty pcie-root-port; a guest with none must refuse and give the device back."""
    root = harness_changes.root
    before = current_driver(root, pf_device.address)
    machine = _noos_guest(harness_guest_type, root_ports=0)
    with _noos_running(harness_changes, machine) as domain:
        xml = hostdev_xml(PciAddress.from_bdf(pf_device.address), managed=True, alias="ua-hotplug-full")
        error = _refused(
            lambda: domain.attachDeviceFlags(xml, LIVE), f"attach to {machine.name} with no free slot"
        )
        message = error.get_error_message()
        assert "slot" in message.lower() or "bus" in message.lower(), (
            f"expected libvirt to name the missing slot, it said: {message}"
        )
        assert live_hostdev_sources(domain) == [], "the refused attach left a hostdev in the live XML"
    found = wait_for_driver(root, pf_device.address, before)
    assert found == before, (
        f"after the refused attach: expected {pf_device.address} on {before}, found {found}"
    )


def test_detach_of_a_device_the_guest_lacks_fails(
    pf_device: HotplugDevice, harness_changes: HostChanges, harness_answering_guest: AnsweringGuest
) -> None:
    root = harness_changes.root
    before_driver = current_driver(root, pf_device.address)
    before = live_hostdev_sources(harness_answering_guest.domain)
    xml = hostdev_xml(PciAddress.from_bdf(pf_device.address), managed=True, alias="ua-hotplug-absent")
    error = _refused(
        lambda: harness_answering_guest.domain.detachDeviceFlags(xml, LIVE),
        f"detach {pf_device.address} from {harness_answering_guest.name}, which does not have it",
    )
    assert error.get_error_code() in (libvirt.VIR_ERR_DEVICE_MISSING, libvirt.VIR_ERR_OPERATION_FAILED), (
        f"expected a device-missing error, got code {error.get_error_code()}: {error.get_error_message()}"
    )
    assert "not found" in error.get_error_message(), error.get_error_message()
    assert live_hostdev_sources(harness_answering_guest.domain) == before
    assert current_driver(root, pf_device.address) == before_driver


# --- tests with the answering guest --------------------------------------------------------------
def _assert_gone(outcome: DetachOutcome, device: HotplugDevice, guest: AnsweringGuest) -> None:
    assert outcome.proved, (
        f"{outcome.explain(PciAddress.from_bdf(device.address), guest.name)}\n"
        f"console tail ({guest.console.path}):\n{guest.console.tail()}\n"
        f"{_reproduce(guest.name, 'detach-device', '--live')}"
    )


@pytest.mark.parametrize("managed", [True, False], ids=["managed", "unmanaged"])
def test_live_attach_and_detach_proved_by_the_guest(
    role: str,
    managed: bool,
    hotplug_device: HotplugDevice,
    booted_guest: AnsweringGuest,
    harness_device_events: DeviceEvents,
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    root = harness_changes.root
    before = current_driver(root, hotplug_device.address)
    seen = booted_guest.console.latest()
    assert seen is not None and not seen.bdfs_with_id(hotplug_device.pci_id), (
        f"guest {booted_guest.name} already lists {hotplug_device.pci_id} before the attach: {seen}"
    )
    detach = DriverDetach.of(hotplug_device.device)
    if not managed:
        harness_changes.make(detach)  # nodedev-detach, journaled
    try:
        alias = _attach(booted_guest.domain, hotplug_device, managed=managed)
        _prove_attached(booted_guest, hotplug_device, root, record_property)
        outcome = _detach(
            booted_guest.domain,
            harness_device_events,
            hotplug_device,
            alias,
            managed=managed,
            console=booted_guest.console,
        )
        record_property("harness.detach_s", round(outcome.seconds, 1))
        _assert_gone(outcome, hotplug_device, booted_guest)
        expected = before if managed else VFIO_DRIVER
        found = wait_for_driver(root, hotplug_device.address, expected)
        assert found == expected, (
            f"after the live detach ({'managed' if managed else 'unmanaged'}): expected {hotplug_device.address} "
            f"on {expected or 'no driver'}, found {found or 'no driver'}"
        )
    finally:
        if any(made.change is detach for made in harness_changes.made):
            harness_changes.undo(detach)
    assert current_driver(root, hotplug_device.address) == before


def test_live_and_config_together(
    pf_device: HotplugDevice,
    booted_guest: AnsweringGuest,
    harness_device_events: DeviceEvents,
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    """--live --config: the running guest and its persistent definition both gain and lose the device."""
    source = PciAddress.from_bdf(pf_device.address)
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    alias = _attach(booted_guest.domain, pf_device, managed=True, flags=LIVE | CONFIG)
    _prove_attached(booted_guest, pf_device, harness_changes.root, record_property)
    assert source in live_hostdev_sources(booted_guest.domain, inactive), (
        f"attach-device --live --config: {source} missing from the persistent XML; "
        f"reproduce: virsh dumpxml --inactive {booted_guest.name}"
    )
    outcome = _detach(
        booted_guest.domain,
        harness_device_events,
        pf_device,
        alias,
        managed=True,
        console=booted_guest.console,
        flags=LIVE | CONFIG,
    )
    _assert_gone(outcome, pf_device, booted_guest)
    assert source not in live_hostdev_sources(booted_guest.domain, inactive), (
        f"detach-device --live --config: {source} still in the persistent XML of {booted_guest.name}"
    )


def test_repeated_cycles_leak_nothing(
    vf_device: HotplugDevice,
    booted_guest: AnsweringGuest,
    harness_device_events: DeviceEvents,
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    """After a first (warm-up) cycle, more cycles leave QEMU's open files and /dev/vfio as they were."""
    pid = qemu_pid(booted_guest.name)

    def cycle() -> None:
        alias = _attach(booted_guest.domain, vf_device, managed=True)
        _prove_attached(booted_guest, vf_device, harness_changes.root, record_property)
        outcome = _detach(
            booted_guest.domain,
            harness_device_events,
            vf_device,
            alias,
            managed=True,
            console=booted_guest.console,
        )
        _assert_gone(outcome, vf_device, booted_guest)

    cycle()
    fds, nodes = open_fd_count(pid), vfio_nodes()
    for _ in range(LEAK_CYCLES - 1):
        cycle()
    record_property("harness.qemu_fds", f"{fds} -> {open_fd_count(pid)}")
    assert open_fd_count(pid) == fds, (
        f"QEMU of {booted_guest.name} (pid {pid}): {fds} open files before, {open_fd_count(pid)} after"
    )
    assert vfio_nodes() == nodes, f"/dev/vfio: {nodes} before, {vfio_nodes()} after {LEAK_CYCLES - 1} cycles"
