"""Assignment cycles on allowlisted devices, every path an administrator uses, each step verified.

- ``nodedev-detach`` / ``nodedev-reattach``: driver in sysfs, libvirt's view, the kernel's uevents,
  ``/dev/vfio/<group>``, and a functional VFIO proof (the group opened the way QEMU opens it);
- ``<hostdev managed='yes'>`` and ``managed='no'`` guests, the device proved on the guest's own PCI bus;
- a device in use by one guest refused to a second; the persistent path (define, attach-device --config,
  detach-device --config, start); an IOMMU group shared by several endpoints, which only goes as a whole.

Only allowlisted devices are touched, never host-critical ones. Every change is journaled with its owner
first and undone after the test, or by the next run after an interruption. A test holds the IOMMU groups
it changes (a lease), so two xdist workers or two runs never use one group at once.
"""

from __future__ import annotations

import os
import shutil

import libvirt
import pytest

from harness.changes.driver_detach import DriverDetach
from harness.changes.guard import DeviceGuard
from harness.changes.guests import DefinedGuest, TransientGuest, VirtInstalledGuest
from harness.changes.leases import GroupLeases
from harness.changes.protocol import HostChanges
from harness.host.drivers import VFIO_DRIVER, current_driver, vfio_group_node
from harness.host.events import PciEventWatcher
from harness.host.pci import PciDevice
from harness.host.vfio import prove_vfio
from harness.libvirt.facts import read_node_device
from harness.libvirt.guests import GUEST_PREFIX
from harness.plugin.devices import allowlist, collected_devices
from harness.plugin.options import options
from harness.xml.address import PciAddress
from harness.xml.domain import Domain, DomainType
from harness.xml.hostdev import PciHostdev
from suites.steps import (
    StepLog,
    assert_driver,
    assert_guest_has,
    held,
    hostdev,
    managed_guest_cycle,
    permitted,
    refused_start,
    throwaway_guest,
)

# Every test on every allowlisted device; --harness-matrix=cover: each test once, each device at least once.
pytestmark = [pytest.mark.harness_destructive, pytest.mark.harness_matrix("address")]


def _shared_groups(config: pytest.Config) -> tuple[list[PciAddress], list[list[PciAddress]]]:
    """Allowlisted devices that can go alone, and groups of several endpoints that are all allowlisted."""
    allowed = allowlist(config)
    try:
        devices = collected_devices(config)
    except OSError:
        return allowed, []
    alone: list[PciAddress] = []
    groups: dict[int, list[PciAddress]] = {}
    for address in allowed:
        device = devices.get(address)
        peers = (
            []
            if device is None or device.iommu_group is None
            else [
                other.address
                for other in devices.values()
                if other.iommu_group == device.iommu_group
                and not other.is_bridge
                and other.address != address
            ]
        )
        if peers and device is not None and all(peer in allowed for peer in peers):
            groups[device.iommu_group or 0] = sorted([address, *peers])
        else:
            alone.append(address)
    return alone, list(groups.values())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    alone, groups = _shared_groups(metafunc.config)
    if "address" in metafunc.fixturenames:
        reason = "no device allowlisted (--harness-allow)"
        metafunc.parametrize(
            "address",
            alone or [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
            ids=[a.bdf for a in alone] or None,
        )
    if "group_endpoints" in metafunc.fixturenames:
        reason = "no IOMMU group with several endpoints has all of them allowlisted (--harness-allow)"
        metafunc.parametrize(
            "group_endpoints",
            [pytest.param(g, id="+".join(map(str, g))) for g in groups]
            or [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
        )


def _fd_count(name: str) -> int:
    """Open descriptors of every local process called ``name`` (libvirtd, qemu-system-x86_64)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as stream:
                if stream.read().strip() != name:
                    continue
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def _vfio_nodes() -> set[str]:
    try:
        return set(os.listdir("/dev/vfio"))
    except OSError:
        return set()


def test_detach_reattach_cycle(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    log: StepLog,
    pytestconfig: pytest.Config,
) -> None:
    """nodedev-detach then nodedev-reattach, --harness-cycles times, with no leak at the end."""
    device = permitted(address, harness_guard, log.record_property)
    # Refusal comes first, so it is reported even where nothing could be changed (a snapshot).
    changes: HostChanges = request.getfixturevalue("harness_changes")
    cycles = options(pytestconfig).cycles
    with harness_leases.hold([device]):
        nodes_before, fds_before = _vfio_nodes(), _fd_count("libvirtd")
        for _ in range(cycles):
            _cycle(device, changes, log)
        # Only this device's group is ours: other workers may hold other groups meanwhile.
        leaked = (_vfio_nodes() - nodes_before) & {str(device.iommu_group)}
        assert not leaked, f"after {cycles} cycles /dev/vfio has new nodes {sorted(leaked)} (ls -l /dev/vfio)"
        fds_after = _fd_count("libvirtd")
        log.record_property("harness.libvirtd_fds", f"{fds_before} -> {fds_after} over {cycles} cycles")
        # A connection or two may come and go; a leak grows with every cycle. Under xdist other workers'
        # guests open fds in the same libvirtd, so the count says nothing about this test there.
        if not hasattr(pytestconfig, "workerinput"):
            assert fds_after <= fds_before + 4, (
                f"libvirtd holds {fds_after} fds after {cycles} cycles, {fds_before} before "
                "(ls /proc/$(pidof libvirtd)/fd)"
            )


def _cycle(device: PciDevice, changes: HostChanges, log: StepLog) -> None:
    before = current_driver(changes.root, device.address)
    log.record_property("harness.driver_before", before or "none")
    detach = DriverDetach.of(device)
    with PciEventWatcher(device.address) as events:
        with log.step("detach", detach.reproduce()):
            changes.make(detach)
        if before is not None:
            assert events.wait_for("unbind"), (
                f"no unbind uevent for {device.address} during nodedev-detach; saw {events.seen()}"
            )
        assert events.wait_for("bind", VFIO_DRIVER), (
            f"no bind uevent to {VFIO_DRIVER} for {device.address} during nodedev-detach; saw {events.seen()}"
        )
    view = read_node_device(changes.connection.nodeDeviceLookupByName(device.nodedev_name).XMLDesc(0))
    assert view.driver == VFIO_DRIVER, (
        f"libvirt after detach: expected driver {VFIO_DRIVER}, found {view.driver}; "
        f"reproduce: virsh nodedev-dumpxml {device.nodedev_name}"
    )
    assert view.iommu_group == device.iommu_group, (
        f"IOMMU group changed across detach: {device.iommu_group} -> {view.iommu_group}"
    )
    if device.iommu_group is not None:
        proof = prove_vfio(device.address.bdf, device.iommu_group)
        log.record_property("harness.vfio_proof", proof.explain())
        assert proof.works, proof.explain()
    node = vfio_group_node(device.iommu_group)
    with PciEventWatcher(device.address) as events:
        with log.step("reattach", f"virsh nodedev-reattach {device.nodedev_name}"):
            changes.undo(detach)
        if before is not None:
            assert events.wait_for("bind", before), (
                f"no bind uevent to {before} for {device.address} during nodedev-reattach; saw {events.seen()}"
            )
    assert_driver(changes, device, before, f"after nodedev-reattach {device.address}")
    if node is not None:
        assert not os.path.exists(node), f"{node} is still there after nodedev-reattach (ls -l /dev/vfio)"


def test_managed_hostdev_guest_takes_and_returns_the_device(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    """<hostdev managed='yes'>: libvirt detaches at guest start and reattaches when the guest is destroyed."""
    with held(address, harness_guard, harness_leases, request, log) as (device, changes, _):
        managed_guest_cycle(changes, device, harness_guest_type, log)


def test_unmanaged_hostdev_guest_needs_a_detached_device(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    """<hostdev managed='no'>: refused while on the host driver; after nodedev-detach it starts, and the
    device stays on vfio-pci after the guest is gone until nodedev-reattach."""
    with held(address, harness_guard, harness_leases, request, log) as (device, changes, before):
        early = TransientGuest.of(throwaway_guest((hostdev(device, managed=False),), harness_guest_type))
        if before != VFIO_DRIVER:
            # libvirt's virHostdevPreparePCIDevices: an unmanaged device must already be on a stub driver.
            refused_start(
                changes,
                early,
                log,
                step="start_refused",
                command="virsh create unmanaged.xml",
                says=f"Unmanaged PCI device {device.address} must be manually detached",
                expected=f"Unmanaged PCI device {device.address} must be manually detached from the host",
                code=libvirt.VIR_ERR_OPERATION_INVALID,
            )
            assert_driver(changes, device, before, "after the refused unmanaged guest")
        detach = DriverDetach.of(device)
        with log.step("detach", detach.reproduce()):
            changes.make(detach)
        guest = TransientGuest.of(throwaway_guest((hostdev(device, managed=False),), harness_guest_type))
        with log.step("start_unmanaged", f"virsh create {guest.name}.xml  # managed='no'"):
            changes.make(guest)
        assert_guest_has(guest.domain(changes.context), device, log)
        with log.step("destroy", f"virsh destroy {guest.name}"):
            changes.undo(guest)
        assert_driver(changes, device, VFIO_DRIVER, f"unmanaged: after destroying {guest.name}")
        with log.step("reattach", f"virsh nodedev-reattach {device.nodedev_name}"):
            changes.undo(detach)
        assert_driver(changes, device, before, "after nodedev-reattach")


def test_device_in_use_is_refused_to_a_second_guest(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    with held(address, harness_guard, harness_leases, request, log) as (device, changes, before):
        first = TransientGuest.of(throwaway_guest((hostdev(device, managed=True),), harness_guest_type))
        with changes.holding(first):
            second = TransientGuest.of(throwaway_guest((hostdev(device, managed=True),), harness_guest_type))
            refused_start(
                changes,
                second,
                log,
                step="start_second",
                command="virsh create second.xml",
                says="in use",
                expected=f"PCI device {device.address} is in use by driver QEMU, domain {first.name}",
                code=libvirt.VIR_ERR_OPERATION_INVALID,
            )
            domain = first.domain(changes.context)
            assert domain.isActive(), f"the first guest {first.name} stopped when the second was refused"
            assert_guest_has(domain, device, log)
        assert_driver(changes, device, before, "after both guests are gone")


def test_persistent_guest_config_attach_detach(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    """define; attach-device --config; detach-device --config; attach again; start; destroy; undefine."""
    with held(address, harness_guard, harness_leases, request, log) as (device, changes, before):
        source = hostdev(device, managed=True)
        guest = DefinedGuest.of(throwaway_guest((), harness_guest_type))
        with changes.holding(guest):
            domain = guest.domain(changes.context)
            config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            with log.step("attach_config", f"virsh attach-device {guest.name} hostdev.xml --config"):
                domain.attachDeviceFlags(source.to_xml(), config)
            assert _has_hostdev(domain, device), (
                f"inactive XML of {guest.name} lacks the hostdev after attach --config (virsh dumpxml --inactive)"
            )
            assert current_driver(changes.root, device.address) == before, (
                "attach --config changed the driver"
            )
            with log.step("detach_config", f"virsh detach-device {guest.name} hostdev.xml --config"):
                domain.detachDeviceFlags(source.to_xml(), config)
            assert not _has_hostdev(domain, device), (
                f"{guest.name} still has the hostdev after detach --config"
            )
            domain.attachDeviceFlags(source.to_xml(), config)
            with log.step("start", f"virsh start {guest.name}"):
                domain.create()
            assert_driver(changes, device, VFIO_DRIVER, f"defined guest {guest.name} running")
            assert_guest_has(domain, device, log)
            with log.step("destroy", f"virsh destroy {guest.name}"):
                domain.destroy()
            assert_driver(changes, device, before, f"after destroying {guest.name}")
        log.commands.append(f"virsh undefine {guest.name}")
    left = [d.name() for d in changes.connection.listAllDomains() if d.name() == guest.name]
    assert not left, f"guest {guest.name} is still defined after undo (virsh list --all)"


def _has_hostdev(domain: libvirt.virDomain, device: PciDevice) -> bool:
    parsed = Domain.parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return any(isinstance(d, PciHostdev) and d.source == device.address for d in parsed.devices)


def test_shared_group_goes_only_as_a_whole(
    group_endpoints: list[PciAddress],
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    """One endpoint of a shared group: QEMU refuses it as 'not viable' until every endpoint is detached."""
    devices = [permitted(address, harness_guard, log.record_property) for address in group_endpoints]
    changes: HostChanges = request.getfixturevalue("harness_changes")
    first, others = devices[0], devices[1:]
    drivers = {d.address: current_driver(changes.root, d.address) for d in devices}
    with harness_leases.hold(devices):
        alone = TransientGuest.of(throwaway_guest((hostdev(first, managed=True),), harness_guest_type))
        refused_start(
            changes,
            alone,
            log,
            step="start_alone",
            command="virsh create one-endpoint.xml",
            says="not viable",
            expected=f"group {first.iommu_group} is not viable (QEMU's words, passed on by libvirt)",
        )
        for device in devices:
            assert_driver(changes, device, drivers[device.address], "after the refused guest")
        detached = [changes.make(DriverDetach.of(other)) for other in others]
        log.commands += [d.reproduce() for d in detached]
        guest = TransientGuest.of(throwaway_guest((hostdev(first, managed=True),), harness_guest_type))
        with changes.holding(guest), log.step("start_group", f"virsh create {guest.name}.xml"):
            assert_guest_has(guest.domain(changes.context), first, log)
        for detach in reversed(detached):
            changes.undo(detach)
    for device in devices:
        assert_driver(changes, device, drivers[device.address], "after the group test")
    leftovers = [
        d.name()
        for d in changes.connection.listAllDomains()
        if d.name().startswith(GUEST_PREFIX + str(os.getpid()))
    ]
    assert not leftovers, f"guests left behind: {leftovers} (virsh list --all)"


def test_virt_install_host_device_guest(
    address: PciAddress,
    harness_guard: DeviceGuard,
    harness_leases: GroupLeases,
    request: pytest.FixtureRequest,
    harness_guest_type: DomainType,
    log: StepLog,
) -> None:
    """The guide's `virt-install --host-device=pci_...`: the guest it defines and starts has the device on
    its own bus; once it is destroyed and undefined the device is back on its host driver."""
    if shutil.which("virt-install") is None:
        pytest.skip("virt-install is missing (Debian package virtinst): the virt-install path was not tried")
    with held(address, harness_guard, harness_leases, request, log) as (device, changes, before):
        guest = VirtInstalledGuest(
            throwaway_guest((), harness_guest_type).name,
            changes.connection.getURI(),
            device.address,
            harness_guest_type,
        )
        with log.step("virt_install", guest.reproduce()), changes.holding(guest):
            domain = guest.domain(changes.context)
            assert _has_hostdev(domain, device), (
                f"virt-install's guest {guest.name} lacks {device.address} (virsh dumpxml {guest.name})"
            )
            assert_driver(changes, device, VFIO_DRIVER, f"virt-install guest {guest.name} running")
            assert_guest_has(domain, device, log)
        log.commands += [f"virsh destroy {guest.name}", f"virsh undefine {guest.name}"]
    assert_driver(changes, device, before, f"after removing {guest.name}")
    left = [d.name() for d in changes.connection.listAllDomains() if d.name() == guest.name]
    assert not left, f"guest {guest.name} is still defined (virsh list --all)"
