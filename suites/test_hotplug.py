"""Live attach and detach of allowlisted devices into a running guest, proved by the guest itself.

One answering guest per module (the lab's Debian kernel with a busybox initramfs that prints its PCI tree
on its serial console, see :mod:`harness.guest.protocol`) starts with the module; the tests that need no
guest OS run first, while it boots. A live attach counts when libvirt's live XML has the device, the guest
lists its vendor:device, and the host driver is vfio-pci; a live detach when libvirt's DEVICE_REMOVED event
arrived, the live XML and the guest lost it, and (managed) the host driver is back.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libvirt
import pytest

from harness.changes.driver_detach import DriverDetach
from harness.changes.guard import DeviceGuard
from harness.changes.guests import TransientGuest
from harness.changes.hotplug import (
    CONFIG,
    LIVE,
    DetachOutcome,
    HotpluggedDevice,
    hostdev_xml,
    live_hostdev_sources,
    pci_id_of,
)
from harness.changes.leases import GroupLeases
from harness.changes.link_state import LinkState
from harness.changes.protocol import ChangeError, HostChanges
from harness.changes.sriov import VfAutoprobe, VfCount
from harness.guest.machine import AnsweringGuest
from harness.host.drivers import VFIO_DRIVER, current_driver, wait_for_driver
from harness.host.netdevs import netdev_names, reproduce_vf_links, vf_index, vf_links
from harness.host.pci import PciDevice
from harness.host.processes import open_fd_count, qemu_pid, vfio_nodes
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.libvirt.guests import guest_with_hostdevs
from harness.plugin.devices import allowlist, collected_devices
from harness.xml.address import PciAddress
from harness.xml.domain import Domain, DomainType
from harness.xml.guest import GuestMachine, q35_root_ports
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface
from suites.steps import RecordProperty, permitted

pytestmark = pytest.mark.harness_destructive

GUEST_BOOT_TIMEOUT_S = 400.0  # TCG inside TCG on a busy 2-core machine: measured 115-160 s
# How long the held-device test waits for DEVICE_REMOVED after libvirt's own 5 s wait (half before the
# second press, half after). A guest with no OS never acknowledges an unplug, so a longer wait proves nothing
# more; it only cost the demo 20 s.
HELD_CHECK_S = 4.0
LEAK_CYCLES = 3


@dataclass(frozen=True)
class HotplugDevice:
    """A device to hotplug: its host address and the vendor:device the guest will list."""

    role: str  # "pf" (a whole function) or "vf"
    address: PciAddress
    pci_id: str
    device: PciDevice


def _candidates(config: pytest.Config) -> tuple[PciAddress | None, PciAddress | None]:
    """The first allowlisted non-SR-IOV device (the whole-function case) and the first SR-IOV PF (for VFs)."""
    allowed = allowlist(config)
    devices = {a: d for a, d in collected_devices(config).items() if a in allowed}
    plain = next((a for a in allowed if a in devices and not devices[a].is_sriov_pf), None)
    sriov = next((a for a in allowed if a in devices and devices[a].is_sriov_pf), None)
    return plain, sriov


def _net_pfs(root: HostRoot, config: pytest.Config) -> list[PciAddress]:
    """Allowlisted SR-IOV PFs with a network interface (igb): their VFs go in as <interface type='hostdev'>."""
    allowed = allowlist(config)
    return [
        d.address
        for d in collected_devices(config).values()
        if d.address in allowed and d.is_sriov_pf and root.listdir(pci_path(d.address, "net"))
    ]


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


def _one_vf(
    address: PciAddress, changes: HostChanges, guard: DeviceGuard, leases: GroupLeases
) -> Iterator[PciAddress]:
    """One VF of the PF ``address``, made with autoprobe off for as long as the generator runs."""
    host = guard.host
    pf = guard.permit(address)
    with (
        leases.hold([pf]),
        changes.holding(VfAutoprobe.of(changes.root, pf, enabled=False)),
        changes.holding(VfCount.of(changes.root, pf, 1)),
    ):
        host.refresh_devices()
        vfs = host.pci.get(pf.address).virtfns
        assert len(vfs) == 1, (
            f"{pf.address}: expected 1 VF after sriov_numvfs=1, found {[str(vf) for vf in vfs]}"
        )
        yield vfs[0]
    host.refresh_devices()


@pytest.fixture(scope="module")
def vf_source(
    harness_changes: HostChanges,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    pytestconfig: pytest.Config,
) -> Iterator[PciAddress]:
    """One VF of the first allowlisted SR-IOV PF, made for this module (autoprobe off) and removed after."""
    _, address = _candidates(pytestconfig)
    if address is None:
        pytest.skip("no allowlisted SR-IOV PF")
    yield from _one_vf(address, harness_changes, harness_guard, harness_leases)


@pytest.fixture(scope="module")
def net_vf_source(
    request: pytest.FixtureRequest,
    harness_changes: HostChanges,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    pytestconfig: pytest.Config,
) -> Iterator[PciAddress]:
    """One VF of the first allowlisted SR-IOV NIC (the module's VF when that PF is the same one)."""
    pfs = _net_pfs(harness_changes.root, pytestconfig)
    if not pfs:
        pytest.skip("no allowlisted SR-IOV PF with a network interface (the lab's igb needs QEMU >= 8 in L1)")
    if pfs[0] == _candidates(pytestconfig)[1]:
        yield request.getfixturevalue("vf_source")
    else:
        yield from _one_vf(pfs[0], harness_changes, harness_guard, harness_leases)


def _hotplug_device(
    role: str,
    address: PciAddress | None,
    guard: DeviceGuard,
    leases: GroupLeases,
    record_property: RecordProperty,
) -> Iterator[HotplugDevice]:
    if address is None:
        pytest.skip(f"no allowlisted device for the {role} case")
    device: PciDevice = permitted(address, guard, record_property)
    record_property("harness.device", f"{role} {device.address}")
    with leases.hold([device]):
        yield HotplugDevice(role, device.address, pci_id_of(guard.host.root, device.address), device)


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


@pytest.fixture
def net_vf_device(
    request: pytest.FixtureRequest,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    record_property: RecordProperty,
) -> Iterator[HotplugDevice]:
    yield from _hotplug_device(
        "vf", request.getfixturevalue("net_vf_source"), harness_guard, harness_leases, record_property
    )


# --- steps ---------------------------------------------------------------------------------------
def _plugged(
    changes: HostChanges,
    guest: AnsweringGuest,
    device: HotplugDevice,
    record_property: RecordProperty,
    **options: object,
) -> HotpluggedDevice:
    """attach-device --live as a journaled change; its verify proves the live XML, vfio-pci and the guest's
    own PCI tree (a refusal or a missing proof fails the test with libvirt's words and the console tail)."""
    source = device.address
    mac = options.pop("mac", None)
    if mac is None:
        managed = bool(options.pop("managed"))
        change = HotpluggedDevice.hostdev(
            changes.root, guest.name, source, managed=managed, console=guest.console.path, **options
        )
    else:
        change = HotpluggedDevice.interface(
            changes.root, guest.name, source, mac=str(mac), console=guest.console.path, **options
        )
    try:
        changes.make(change)
    finally:
        record_property("harness.guest_pci", str(guest.console.latest()))
    return change


def _assert_gone(outcome: DetachOutcome, device: HotplugDevice, guest: AnsweringGuest) -> None:
    assert outcome.proved, (
        f"{outcome.explain(device.address, guest.name)}\n"
        f"console tail ({guest.console.path}):\n{guest.console.tail()}\n"
        f"reproduce: virsh detach-device {guest.name} device.xml --live"
    )


def _unplugged(
    changes: HostChanges, plugged: HotpluggedDevice, device: HotplugDevice, guest: AnsweringGuest
) -> DetachOutcome:
    """detach-device --live, judged by the event, the live XML and the guest; then the journal entry is
    closed (its undo finds the device gone)."""
    outcome = plugged.detach(changes.context)
    _assert_gone(outcome, device, guest)
    changes.undo(plugged)
    return outcome


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
    harness_guest_type: DomainType,
    record_property: RecordProperty,
) -> None:
    """libvirt says "Device detached successfully" after its 5 s wait even when the guest never acked:
    the harness must call that what it is, not a detach, and so must the change's undo (what recovery runs)."""
    root = harness_changes.root
    source = pf_device.address
    before = current_driver(root, pf_device.address)
    machine = _noos_guest(harness_guest_type)
    with _noos_running(harness_changes, machine) as domain:
        plugged = harness_changes.make(
            HotpluggedDevice.hostdev(root, machine.name, source, managed=True, removal_timeout_s=HELD_CHECK_S)
        )
        outcome = plugged.detach(harness_changes.context)
        record_property("harness.detach_outcome", outcome.explain(source, machine.name))
        assert outcome.held_by_guest and not outcome.proved, (
            f"a guest with no OS cannot acknowledge an unplug, yet the harness judged: {outcome}"
        )
        assert current_driver(root, pf_device.address) == VFIO_DRIVER, "the held device left vfio-pci"
        with pytest.raises(ChangeError) as refused:
            harness_changes.undo(plugged)
        record_property("harness.undo_of_held", str(refused.value))
        assert source in live_hostdev_sources(domain), (
            f"the undo of a held device reported failure ({refused.value}), yet the live XML lost {source}"
        )
    # The guest is destroyed: the device leaves with it, and the pending hotplug's undo is now a no-op.
    said = harness_changes.undo(plugged)
    assert "not running" in said, said
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
    source = pf_device.address
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
        xml = hostdev_xml(pf_device.address, managed=True, alias="ua-hotplug-full")
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
    xml = hostdev_xml(pf_device.address, managed=True, alias="ua-hotplug-absent")
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
@pytest.mark.parametrize("managed", [True, False], ids=["managed", "unmanaged"])
def test_live_attach_and_detach_proved_by_the_guest(
    role: str,
    managed: bool,
    hotplug_device: HotplugDevice,
    booted_guest: AnsweringGuest,
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
        plugged = _plugged(harness_changes, booted_guest, hotplug_device, record_property, managed=managed)
        outcome = _unplugged(harness_changes, plugged, hotplug_device, booted_guest)
        record_property("harness.detach_s", round(outcome.seconds, 1))
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
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    """--live --config: the running guest and its persistent definition both gain and lose the device."""
    source = pf_device.address
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    # The change's verify checks the persistent XML too when it carries --config.
    plugged = _plugged(
        harness_changes, booted_guest, pf_device, record_property, managed=True, flags=LIVE | CONFIG
    )
    _unplugged(harness_changes, plugged, pf_device, booted_guest)
    assert source not in live_hostdev_sources(booted_guest.domain, inactive), (
        f"detach-device --live --config: {source} still in the persistent XML of {booted_guest.name}"
    )


def test_repeated_cycles_leak_nothing(
    vf_device: HotplugDevice,
    booted_guest: AnsweringGuest,
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    """After a first (warm-up) cycle, more cycles leave QEMU's open files and /dev/vfio as they were."""
    pid = qemu_pid(booted_guest.name)

    def cycle() -> None:
        plugged = _plugged(harness_changes, booted_guest, vf_device, record_property, managed=True)
        _unplugged(harness_changes, plugged, vf_device, booted_guest)

    cycle()
    fds, nodes = open_fd_count(pid), vfio_nodes()
    for _ in range(LEAK_CYCLES - 1):
        cycle()
    record_property("harness.qemu_fds", f"{fds} -> {open_fd_count(pid)}")
    assert open_fd_count(pid) == fds, (
        f"QEMU of {booted_guest.name} (pid {pid}): {fds} open files before, {open_fd_count(pid)} after"
    )
    assert vfio_nodes() == nodes, f"/dev/vfio: {nodes} before, {vfio_nodes()} after {LEAK_CYCLES - 1} cycles"


def test_live_hostdev_interface_with_its_mac(
    net_vf_device: HotplugDevice,
    booted_guest: AnsweringGuest,
    harness_changes: HostChanges,
    record_property: RecordProperty,
) -> None:
    """An SR-IOV NIC's VF as <interface type='hostdev' managed='yes'> with a MAC: libvirt sets the MAC on
    the PF's VF before handing the VF to the guest; the guest lists it, DEVICE_REMOVED takes it out."""
    root = harness_changes.root
    source = net_vf_device.address
    before = current_driver(root, source)
    mac = "52:54:00:" + ":".join(f"{octet:02x}" for octet in uuid.uuid4().bytes[:3])
    pf = net_vf_device.device.physfn
    assert pf is not None, f"{source} is a VF without a PF"
    (pf_netdev,) = netdev_names(root, pf)
    index = vf_index(root, pf, source)
    # libvirt refuses to set a VF's MAC through a PF that is down ("the PF is not online").
    with harness_changes.holding(LinkState.of(root, pf_netdev, up=True)):
        plugged = _plugged(harness_changes, booted_guest, net_vf_device, record_property, mac=mac)
        interfaces = [
            d for d in Domain.parse(booted_guest.domain.XMLDesc(0)).devices
            if isinstance(d, HostdevInterface) and d.source == source
        ]  # fmt: skip
        assert [i.mac for i in interfaces] == [mac], (
            f"live XML of {booted_guest.name}: expected one <interface type='hostdev'> for {source} with MAC "
            f"{mac}, found {[(str(i.source), i.mac) for i in interfaces]}; reproduce: virsh dumpxml {booted_guest.name}"
        )
        link = vf_links(pf_netdev).get(index)
        record_property("harness.vf_mac", f"{pf_netdev} {link.describe() if link else f'vf {index}: none'}")
        assert link is not None and link.mac.lower() == mac, (
            f"while {source} is attached: expected MAC {mac} on vf {index} of {pf_netdev}, found "
            f"{link.describe() if link else 'no such vf line'}; reproduce: {reproduce_vf_links(pf_netdev)}"
        )
        outcome = _unplugged(harness_changes, plugged, net_vf_device, booted_guest)
    record_property("harness.detach_s", round(outcome.seconds, 1))
    found = wait_for_driver(root, source, before)
    assert found == before, (
        f"after the live detach of the <interface type='hostdev'>: expected {source} on {before or 'no driver'}, "
        f"found {found or 'no driver'}"
    )
