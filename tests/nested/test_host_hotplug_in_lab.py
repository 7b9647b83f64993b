"""Host-side hotplug: a device added to and removed from L1's free root port through QEMU's monitor (what a
physical hotplug looks like to L1) is seen by the kernel's uevents, by libvirt's nodedev and by the inventory.

And the rude case: the device is pulled while a running guest holds it. The harness reports where the guest,
libvirt, sysfs, the kernel and the journal stand (``host_unplug_report``), restores what it can (the journaled
guest, through ``hostdev-harness restore``), and puts the device back; every wait is bounded."""

from __future__ import annotations

import json
import shlex
import time

import libvirt
import pytest

from harness.lab.lab import Lab
from harness.xml.address import PciAddress
from tests.nested.conftest import REPO, VENV_BIN, checked_exec, wait_until

pytestmark = pytest.mark.nested

LIBVIRT_SEES_WITHIN_S = 120.0  # measured ~1 s on an idle machine; the bound leaves room for a busy one
READY_FLAG = "/tmp/hostdev-harness-uevent-watch.ready"
WATCH_OUTPUT = "/tmp/hostdev-harness-uevent-watch.out"
UEVENT_WITHIN_S = 180.0
# How long a host-side unplug of an assigned device is given before it counts as held: pciehp waits 5 s
# after the attention button, then vfio-pci asks the device's user every 10 s to release it.
UNPLUG_SETTLES_WITHIN_S = 60.0
UNPLUG_DRIVER = f"{VENV_BIN}/python {REPO}/tests/nested/unplug_driver.py"
# Runs in L1: wait for the first PCI uevent of `action` and print its device, once the monitor listens.
# poll() also returns None when libudev drops a uevent of another subsystem (the kernel source is filtered
# in user space), so None means "keep listening", not "nothing came".
WATCH = f"""
import pathlib, sys, time, pyudev
monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
monitor.filter_by("pci")
monitor.start()
pathlib.Path("{READY_FLAG}").touch()
deadline = time.monotonic() + {UEVENT_WITHIN_S}
while time.monotonic() < deadline:
    device = monitor.poll(timeout=5)
    if device is None:
        continue
    print(device.action, device.sys_name, flush=True)
    if device.action == sys.argv[1]:
        print(device.sys_name)
        sys.exit(0)
sys.exit("no uevent")
"""


def _uevent_during(lab: Lab, action: str, change: object) -> str:
    """Run ``change`` while L1 listens for a PCI uevent of ``action``; the device's BDF.

    The agent runs one command at a time, so the watcher runs detached and reports through a file."""
    assert callable(change)
    lab.exec(f"rm -f {READY_FLAG} {WATCH_OUTPUT}")
    watcher = f"{VENV_BIN}/python -c {shlex.quote(WATCH)} {action}; echo rc=$?"
    checked_exec(lab, f"setsid sh -c {shlex.quote(watcher)} > {WATCH_OUTPUT} 2>&1 < /dev/null &")
    wait_until(lambda: lab.exec(f"test -e {READY_FLAG}")[0] == 0, 60, "the uevent monitor in L1")
    change()
    deadline = time.monotonic() + UEVENT_WITHIN_S
    while lab.exec(f"grep -q '^rc=' {WATCH_OUTPUT}")[0] != 0 and time.monotonic() < deadline:
        time.sleep(1)
    output = checked_exec(lab, f"cat {WATCH_OUTPUT}")
    assert "rc=0" in output, (
        f"no PCI {action} uevent in L1 within {UEVENT_WITHIN_S:.0f}s; saw: {output[-1000:]}"
    )
    return output.strip().splitlines()[-2]


def _inventory_addresses(lab: Lab) -> set[str]:
    return {
        row["address"]
        for row in json.loads(checked_exec(lab, f"{VENV_BIN}/hostdev-harness inventory --json"))
    }


def test_qmp_hotplug_is_seen_by_uevents_libvirt_and_the_inventory(default_lab: Lab) -> None:
    port = next(d for d in default_lab.devices if d.role == "free-root-port")
    device_id = "hostdev-harness-hotplugged"
    connection = libvirt.open(default_lab.libvirt_uri)
    try:
        added = _uevent_during(
            default_lab,
            "add",
            lambda: default_lab.qmp("device_add", {"driver": "e1000e", "bus": port.qemu_id, "id": device_id}),
        )
        name = PciAddress.from_bdf(added).nodedev_name
        started = time.monotonic()

        def libvirt_lists(present: bool) -> bool:
            return (name in connection.listDevices("pci", 0)) == present

        wait_until(
            lambda: libvirt_lists(True), LIBVIRT_SEES_WITHIN_S, f"libvirt's nodedev {name} after device_add"
        )
        appeared_s = time.monotonic() - started
        assert added in _inventory_addresses(default_lab), (
            f"the inventory does not list the hotplugged {added}"
        )
        started = time.monotonic()
        removed = _uevent_during(
            default_lab, "remove", lambda: default_lab.qmp("device_del", {"id": device_id})
        )
        assert removed == added, f"device_del removed {removed}, expected {added}"
        assert default_lab.exec(f"test -e /sys/bus/pci/devices/{added}")[0] != 0, (
            f"{added} is still in L1's sysfs"
        )
        wait_until(
            lambda: libvirt_lists(False), LIBVIRT_SEES_WITHIN_S, f"{name} to leave libvirt after device_del"
        )
        gone_s = time.monotonic() - started
        assert added not in _inventory_addresses(default_lab), (
            f"the inventory still lists the removed {added}"
        )
        print(f"nodedev {name}: appeared after {appeared_s:.1f}s, gone after {gone_s:.1f}s")
    finally:
        with_device = [d for d in (default_lab.qmp("query-pci") or []) if device_id in json.dumps(d)]
        if with_device:
            default_lab.qmp("device_del", {"id": device_id})
        connection.close()


def _in_l1_qemu(lab: Lab, device_id: str) -> bool:
    """QEMU (L0's view) still has the device: a device_del completes only once L1 powered the slot off."""
    return any(device_id in json.dumps(bus) for bus in lab.qmp("query-pci") or [])


def _unplug_report(lab: Lab, bdf: str, guest: str) -> dict[str, object]:
    output = checked_exec(lab, f"cd {REPO} && {UNPLUG_DRIVER} report {bdf} {guest}")
    report: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return report


def _added(lab: Lab, port: str, device_id: str, connection: libvirt.virConnect) -> str:
    """device_add an e1000e on ``port``; its BDF once the uevent came and libvirt lists it with its driver."""
    added = _uevent_during(
        lab, "add", lambda: lab.qmp("device_add", {"driver": "e1000e", "bus": port, "id": device_id})
    )
    name = PciAddress.from_bdf(added).nodedev_name
    wait_until(lambda: name in connection.listDevices("pci", 0), LIBVIRT_SEES_WITHIN_S, f"nodedev {name}")
    wait_until(
        lambda: lab.exec(f"test -e /sys/bus/pci/devices/{added}/driver")[0] == 0,
        LIBVIRT_SEES_WITHIN_S,
        f"a host driver on {added}",
    )
    return added


def test_unplug_of_a_device_a_running_guest_holds_is_reported_and_restored(
    default_lab: Lab, record_property: object
) -> None:
    """QMP device_del on L1 of a device assigned to a running L2 guest (with no OS to ack the unplug)."""
    assert callable(record_property)
    port = [d for d in default_lab.devices if d.role == "free-root-port"][-1]
    device_id = "hostdev-harness-rude"
    connection = libvirt.open(default_lab.libvirt_uri)
    guest = ""
    try:
        added = _added(default_lab, port.qemu_id, device_id, connection)
        output = checked_exec(default_lab, f"cd {REPO} && {UNPLUG_DRIVER} assign {added}")
        guest = str(json.loads(output.strip().splitlines()[-1])["guest"])
        assert default_lab.exec(f"readlink /sys/bus/pci/devices/{added}/driver | grep -q vfio-pci")[0] == 0

        started = time.monotonic()
        default_lab.qmp("device_del", {"id": device_id})
        relayed = f"dmesg | grep -q '{added}: Relaying device request'"
        deadline = started + UNPLUG_SETTLES_WITHIN_S
        while time.monotonic() < deadline and _in_l1_qemu(default_lab, device_id):
            if default_lab.exec(relayed)[0] == 0:
                break
            time.sleep(1)
        settled_s = round(time.monotonic() - started, 1)
        report = _unplug_report(default_lab, added, guest)
        record_property("harness.host_unplug_report", report["explain"])
        record_property("harness.host_unplug_settled_s", settled_s)
        print(report["explain"])
        # What happens (measured in the default lab, L1 on QEMU 10, L2 on QEMU 7.2): the unplug does not
        # complete, and nothing errors. L1's pciehp starts the removal and the driver link goes, but
        # vfio-pci's remove blocks while the guest's QEMU holds the device: it relays the request to that
        # QEMU (#0, then every 10 s), which asks its guest to unplug; a guest that never acks keeps it.
        # The guest runs on, libvirt's live XML and nodedev still list it, the journal holds the guest.
        assert _in_l1_qemu(default_lab, device_id), (
            f"device_del of {added} completed although guest {guest} held it:\n{report['explain']}"
        )
        assert str(report["guest_state"]).startswith("running"), report["explain"]
        assert report["in_live_xml"] is True and report["in_sysfs"] is True, report["explain"]
        assert report["nodedev_listed"] is True, report["explain"]
        assert report["removal_waits_for_user"] is True, (
            f"expected vfio-pci to hold the removal (driver link gone, request relayed to the guest's QEMU):\n"
            f"{report['explain']}"
        )
        pending = report["pending"]
        assert isinstance(pending, list) and any(guest in entry for entry in pending), report["explain"]

        # Restore what can be restored: the journaled guest (its owner is gone) is destroyed, vfio lets go,
        # and the unplug that waited completes.
        restored = checked_exec(default_lab, f"{VENV_BIN}/hostdev-harness restore")
        assert f"destroyed guest {guest}" in restored, restored
        started = time.monotonic()
        wait_until(
            lambda: not _in_l1_qemu(default_lab, device_id),
            UNPLUG_SETTLES_WITHIN_S,
            f"device_del of {added} to complete once {guest} was destroyed",
        )
        record_property("harness.unplug_after_restore_s", round(time.monotonic() - started, 1))
        name = PciAddress.from_bdf(added).nodedev_name
        wait_until(
            lambda: name not in connection.listDevices("pci", 0), LIBVIRT_SEES_WITHIN_S, f"{name} to leave"
        )
        after = _unplug_report(default_lab, added, guest)
        assert after["guest_state"] == "gone" and not after["in_sysfs"], after["explain"]
        assert after["pending"] == [], after["explain"]

        # The device comes back where it was, on its host driver.
        readded = _added(default_lab, port.qemu_id, device_id, connection)
        assert readded == added, f"device_add after the restore gave {readded}, expected {added}"
    finally:
        if guest:
            default_lab.exec(f"virsh destroy {guest}")
        if _in_l1_qemu(default_lab, device_id):
            default_lab.qmp("device_del", {"id": device_id})
            wait_until(lambda: not _in_l1_qemu(default_lab, device_id), UNPLUG_SETTLES_WITHIN_S, "cleanup")
        connection.close()
