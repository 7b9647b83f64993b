"""Guest PCI topology past one bus: what libvirt adds for more than 31 devices, multifunction slots, and
a live attach with no free slot. Emulated NICs only (no host device changes), guests with no OS.

A conventional PCI bus has 32 slots, and libvirt keeps some for itself: on ``pc`` (i440fx) it must add a
``pci-bridge`` and place devices behind it; on ``q35`` every PCIe device gets a ``pcie-root-port`` of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import libvirt
import pytest

from harness.changes.guests import DefinedGuest, TransientGuest
from harness.changes.protocol import HostChanges
from harness.libvirt.guests import guest_with_hostdevs
from harness.xml.address import PciAddress
from harness.xml.domain import DomainType
from harness.xml.guest import EmulatedNic, GuestMachine, MachineType, q35_root_ports
from suites.steps import RecordProperty

MANY_DEVICES = 33  # more than a conventional bus's 32 slots
NIC_MODEL: dict[MachineType, str] = {"pc": "e1000", "q35": "e1000e"}  # e1000e is PCIe: one root port each


@contextlib.contextmanager
def _defined(changes: HostChanges, machine: GuestMachine) -> Iterator[libvirt.virDomain]:
    """Define ``machine`` (shut off); journaled, destroyed and undefined afterwards."""
    with changes.holding(DefinedGuest(machine.name, machine.to_xml())) as defined:
        yield defined.domain(changes.context)


def _started(domain: libvirt.virDomain) -> None:
    try:
        domain.create()
    except libvirt.libvirtError as exc:
        pytest.fail(
            f"guest {domain.name()} was defined but does not start: {exc.get_error_message()}; "
            f"reproduce: virsh start {domain.name()}",
            pytrace=False,
        )
    assert domain.isActive(), f"guest {domain.name()} is not running after start"


@pytest.mark.parametrize("machine_type", ["pc", "q35"])
def test_more_than_31_devices_get_more_buses(
    machine_type: MachineType,
    harness_changes: HostChanges,
    harness_guest_type: DomainType,
    record_property: RecordProperty,
) -> None:
    nics = tuple(EmulatedNic(NIC_MODEL[machine_type]) for _ in range(MANY_DEVICES))
    machine = GuestMachine(guest_with_hostdevs((), harness_guest_type), machine=machine_type, nics=nics)
    with _defined(harness_changes, machine) as domain:
        defined = GuestMachine.parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        models = [c.model for c in defined.controllers]
        record_property("harness.pci_controllers", " ".join(models))
        addresses = [nic.guest_address for nic in defined.nics]
        assert len(defined.nics) == MANY_DEVICES and None not in addresses, (
            f"expected {MANY_DEVICES} NICs with addresses in the defined XML, found {addresses}; "
            f"reproduce: virsh dumpxml --inactive {machine.name}"
        )
        placed = [a for a in addresses if a is not None]
        assert len(set(placed)) == len(placed), f"two NICs share a PCI address: {placed}"
        buses = {a.bus for a in placed}
        if machine_type == "pc":
            bridges = [c for c in defined.controllers if c.model == "pci-bridge"]
            assert bridges, f"pc with {MANY_DEVICES} NICs: libvirt added no pci-bridge; controllers: {models}"
            behind = buses & {c.index for c in bridges}
            assert behind, (
                f"no NIC sits behind a pci-bridge (NIC buses {sorted(buses)}, controllers {models})"
            )
        else:
            ports = {c.index for c in defined.controllers if c.model == "pcie-root-port"}
            assert len(ports) >= MANY_DEVICES and buses <= ports and len(buses) == MANY_DEVICES, (
                f"q35: expected each e1000e on a pcie-root-port of its own; ports {sorted(ports)}, "
                f"NIC buses {sorted(buses)}"
            )
        _started(domain)


def test_multifunction_slot_is_defined_and_starts(
    harness_changes: HostChanges, harness_guest_type: DomainType, record_property: RecordProperty
) -> None:
    slot = 0x10
    nics = (
        EmulatedNic("e1000", PciAddress(0, 0, slot, 0, multifunction=True)),
        EmulatedNic("e1000", PciAddress(0, 0, slot, 1)),
    )
    machine = GuestMachine(guest_with_hostdevs((), harness_guest_type), machine="pc", nics=nics)
    with _defined(harness_changes, machine) as domain:
        defined = GuestMachine.parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        found = [nic.guest_address for nic in defined.nics]
        record_property("harness.multifunction", " ".join(str(a) for a in found))
        assert found == [nic.guest_address for nic in nics], (
            f"expected functions 0 (multifunction='on') and 1 of slot {slot:#x}, the defined XML has {found}; "
            f"reproduce: virsh dumpxml --inactive {machine.name}"
        )
        _started(domain)
        live = GuestMachine.parse(domain.XMLDesc(0))
        assert [nic.guest_address for nic in live.nics] == found, "the running guest moved the functions"


def test_live_attach_with_no_free_slot_fails_clearly(
    harness_changes: HostChanges, harness_guest_type: DomainType
) -> None:
    """q35 hotplug goes into an empty pcie-root-port; with none, libvirt must refuse and change nothing."""
    machine = GuestMachine(guest_with_hostdevs((), harness_guest_type), controllers=q35_root_ports(0))
    with harness_changes.holding(TransientGuest(machine.name, machine.to_xml())) as guest:
        domain = guest.domain(harness_changes.context)
        before = GuestMachine.parse(domain.XMLDesc(0))
        try:
            domain.attachDeviceFlags(EmulatedNic("e1000e").to_xml(), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            message = exc.get_error_message()
        else:
            pytest.fail(
                f"{machine.name} has no free root port, yet libvirt hotplugged an e1000e", pytrace=False
            )
        assert "slot" in message.lower() or "bus" in message.lower(), (
            f"expected libvirt to say there is no free PCI slot, it said: {message}"
        )
        assert GuestMachine.parse(domain.XMLDesc(0)) == before, "the refused attach changed the live XML"
