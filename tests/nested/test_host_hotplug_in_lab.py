"""Host-side hotplug: a device added to and removed from L1's free root port through QEMU's monitor (what a
physical hotplug looks like to L1) is seen by the kernel's uevents, by libvirt's nodedev and by the inventory."""

from __future__ import annotations

import json
import shlex
import time

import libvirt
import pytest

from harness.lab.lab import Lab
from harness.xml.address import PciAddress
from tests.nested.conftest import VENV_BIN, checked_exec, wait_until

pytestmark = pytest.mark.nested

LIBVIRT_SEES_WITHIN_S = 30.0  # measured ~1 s on an idle machine; the bound leaves room for a busy one
READY_FLAG = "/tmp/hostdev-harness-uevent-watch.ready"
WATCH_OUTPUT = "/tmp/hostdev-harness-uevent-watch.out"
UEVENT_WITHIN_S = 180.0
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
