"""Runs inside L1: drives one scenario of changes and dies by SIGKILL at a chosen moment; then checks.

    kill_driver.py plan                       the kill points, one JSON line each
    kill_driver.py run SCENARIO POINT [GUEST] run SCENARIO, SIGKILL at checkpoint POINT (an index), or
                                              INDEX+SECONDS after it (in the middle of the call then);
                                              GUEST: the running answering guest the hotplug scenario uses
    kill_driver.py state                      drivers, VF counts, autoprobe, guests, journal, /dev/vfio
    kill_driver.py loop [SCENARIO...]         every kill point (of those scenarios), each followed by a
                                              recovery and a state check; one JSON summary (what a test
                                              from L0 reads)

Small on purpose: the unit under test is the change machinery (journal, owners, undo), so each kill
interrupts a few real changes, not a whole suite run. Devices come from the lab's HARNESS_ALLOW.

The hotplug scenario attaches a device to a running guest that outlives the killed process (as a harness
run hotplugging into a long-lived guest would): the loop starts the lab's answering guest first, runs the
other kill points while it boots, and recovery must detach the device from that guest, which acks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.changes.driver_detach import DriverDetach
from harness.changes.guard import DeviceGuard
from harness.changes.guests import TransientGuest
from harness.changes.hotplug import HotpluggedDevice
from harness.changes.journal import DEFAULT_JOURNAL, ChangeJournal, Owner
from harness.changes.link_state import LinkState
from harness.changes.networks import DefinedNetwork
from harness.changes.protocol import Change, ChangeContext, HostChanges, recover
from harness.changes.sriov import VfAutoprobe, VfCount
from harness.errors import HostChangeError
from harness.guest.image import GUEST_IMAGE_ENV, GuestImage
from harness.guest.machine import AnsweringGuest, answering_guest_machine
from harness.guest.protocol import SERIAL_LOG_DIR, GuestConsole, fresh_serial_log
from harness.host.host import Host
from harness.host.netdevs import link_is_up, netdev_names
from harness.host.pci import parse_pci_address
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.libvirt.connection import open_connection
from harness.libvirt.guests import GUEST_PREFIX, guest_with_hostdevs
from harness.libvirt.networks import NETWORK_PREFIX, vf_pool
from harness.opening import open_host
from harness.xml.address import PciAddress
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import NetworkInterface

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
POINTS = ("recorded", "applied", "verified", "undoing")
ALLOWED = [parse_pci_address(a) for a in os.environ.get("HARNESS_ALLOW", "").split(",") if a]
ANSWERING_BOOT_TIMEOUT_S = 400.0  # TCG inside TCG on a busy 2-core machine: 115-160 s measured
HOTPLUG_GUEST = GUEST_PREFIX + "answering"  # the loop's own long-lived guest, not one a scenario makes


class KillAt(HostChanges):
    """SIGKILLs its own process at the ``kill_at``-th checkpoint of the scenario."""

    kill_at: int = -1
    delay: float | None = None  # after the kill_at-th checkpoint: die this much later, mid-call
    seen: int = 0

    def checkpoint(self, point: str, change: Change) -> None:
        if point not in POINTS:
            return
        if self.seen == self.kill_at:
            print(
                f"killed at {point} of {change.describe()} (+{self.delay or 0} s)",
                file=sys.stderr,
                flush=True,
            )
            if self.delay is None:
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                threading.Timer(self.delay, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        self.seen += 1


def _host() -> Host:
    return open_host()


def _changes(host: Host) -> KillAt:
    connection = open_connection("qemu:///system")
    return KillAt(
        ChangeContext(host.root, lambda: connection),
        ChangeJournal(DEFAULT_JOURNAL),
        Owner.this_process(worker="kill-driver"),
        DeviceGuard(host, ALLOWED),
    )


def _by_kind(host: Host) -> dict[str, PciAddress]:
    """The lab's devices by role: an SR-IOV PF, two single-group NICs, and a shared group's endpoints."""
    roles: dict[str, PciAddress] = {}
    shared: list[PciAddress] = []
    for address in ALLOWED:
        device = host.pci.get(address)
        group = host.pci.group_of(device)
        endpoints = [m for m in group.members if not m.is_bridge] if group else []
        if device.is_sriov_pf and netdev_names(host.root, address):
            roles.setdefault("netpf", address)  # the SR-IOV NIC (igb): its VF pool
        elif device.is_sriov_pf and "pf" not in roles:
            roles["pf"] = address
        elif len(endpoints) > 1:
            shared.append(address)
        elif "nic" not in roles:
            roles["nic"] = address
        else:
            roles.setdefault("nic2", address)
    if len(shared) >= 2:
        roles["ep0"], roles["ep1"] = sorted(shared)[:2]
    return roles


def _guest(address: PciAddress, *, managed: bool) -> TransientGuest:
    hostdev = PciHostdev(source=address, managed=managed)
    return TransientGuest.of(guest_with_hostdevs((hostdev,), "qemu"))


def scenario(name: str, changes: KillAt, host: Host, answering: str = HOTPLUG_GUEST) -> None:
    roles = _by_kind(host)
    if name == "detach":
        detach = changes.make(DriverDetach.of(host.pci.get(roles["nic"])))
        changes.undo(detach)
    elif name == "managed":
        guest = changes.make(_guest(roles["nic2"], managed=True))
        changes.undo(guest)
    elif name == "unmanaged":
        detach = changes.make(DriverDetach.of(host.pci.get(roles["nic"])))
        guest = changes.make(_guest(roles["nic"], managed=False))
        changes.undo(guest)
        changes.undo(detach)
    elif name == "vf":
        pf = host.pci.get(roles["pf"])
        autoprobe = changes.make(VfAutoprobe.of(host.root, pf, enabled=False))
        count = changes.make(VfCount.of(host.root, pf, 2))
        host.refresh_devices()
        vf = host.pci.get(pf.address).virtfns[0]
        guest = changes.make(_guest(vf, managed=True))
        changes.undo(guest)
        changes.undo(count)
        changes.undo(autoprobe)
    elif name == "pool":
        pf = host.pci.get(roles["netpf"])
        netdev = netdev_names(host.root, pf.address)[0]
        autoprobe = changes.make(VfAutoprobe.of(host.root, pf, enabled=False))
        count = changes.make(VfCount.of(host.root, pf, 1))
        link = changes.make(LinkState.of(host.root, netdev, up=True))
        pool = changes.make(DefinedNetwork.of(host.root, vf_pool(pf=netdev), autostart=True))
        interface = NetworkInterface(pool.name, mac="52:54:00:4b:00:01")
        guest = changes.make(TransientGuest.of(guest_with_hostdevs((interface,), "qemu")))
        for change in (guest, pool, link, count, autoprobe):
            changes.undo(change)
    elif name == "group":
        other = changes.make(DriverDetach.of(host.pci.get(roles["ep1"])))
        guest = changes.make(_guest(roles["ep0"], managed=True))
        changes.undo(guest)
        changes.undo(other)
    elif name == "hotplug":
        console = SERIAL_LOG_DIR / f"{answering}.serial.log"
        source = roles["nic"]
        plugged = changes.make(
            HotpluggedDevice.hostdev(host.root, answering, source, managed=True, console=str(console))
        )
        changes.undo(plugged)
    else:
        raise SystemExit(f"unknown scenario {name}")


def plan() -> list[tuple[str, str]]:
    """(scenario, point): checkpoints spread over every scenario, and timed kills mid-call."""
    counts = {"detach": 4, "managed": 4, "unmanaged": 8, "vf": 12, "group": 8, "pool": 20}
    chosen = {
        "detach": [0, 1, 2, 3],
        "managed": [0, 1, 2, 3],
        "unmanaged": [1, 3, 4, 6],
        "vf": [0, 2, 4, 5, 7, 8, 10],
        "group": [1, 2, 4, 7],
        # The pool network (checkpoints 9-11: recorded, applied = defined, started and autostarting;
        # verified), the guest on it (12-14), and the network's undo (16).
        "pool": [10, 11, 13, 16],
    }
    points = [
        (name, str(index)) for name, indexes in chosen.items() for index in indexes if index < counts[name]
    ]
    # Killed at a moment no checkpoint marks, a little after a change was recorded: inside the libvirt
    # call or sysfs write that applies it (guest start, nodedev-detach, VF creation).
    points += [("managed", "0+0.5"), ("detach", "0+0.02"), ("vf", "3+0.05"), ("group", "3+1.0")]
    # Last, once the answering guest has booted: killed before, after and while hotplugging into it.
    points += [("hotplug", str(index)) for index in range(4)] + [("hotplug", "3+2.0")]
    return points


def state() -> dict[str, Any]:
    host = _host()
    devices = {}
    for address in ALLOWED:
        devices[address.bdf] = {
            "driver": host.root.link_name(pci_path(address, "driver")),
            "numvfs": host.root.read_stripped(pci_path(address, "sriov_numvfs")),
            "autoprobe": host.root.read_stripped(pci_path(address, "sriov_drivers_autoprobe")),
        }
        netdevs = netdev_names(host.root, address)
        if netdevs and devices[address.bdf]["numvfs"] is not None:
            devices[address.bdf]["link_up"] = str(link_is_up(host.root, netdevs[0]))
    guests = subprocess.run(["virsh", "list", "--all", "--name"], capture_output=True, text=True, check=False)
    networks = subprocess.run(
        ["virsh", "net-list", "--all", "--name"], capture_output=True, text=True, check=False
    )
    autostart = Path("/etc/libvirt/qemu/networks/autostart")
    return {
        "devices": devices,
        "guests": sorted(n for n in guests.stdout.split() if n.startswith(GUEST_PREFIX)),
        "networks": sorted(n for n in networks.stdout.split() if n.startswith(NETWORK_PREFIX)),
        "autostart": sorted(p.name for p in autostart.iterdir()) if autostart.is_dir() else [],
        "journal": [e.kind for e in ChangeJournal(DEFAULT_JOURNAL).pending()],
        "vfio": sorted(n for n in os.listdir("/dev/vfio") if n != "vfio")
        if os.path.isdir("/dev/vfio")
        else [],
    }


def run(name: str, point: str, guest: str = HOTPLUG_GUEST) -> None:
    host = _host()
    changes = _changes(host)
    index, _, delay = point.partition("+")
    changes.kill_at = int(index)
    changes.delay = float(delay) if delay else None
    scenario(name, changes, host, guest)
    print("scenario finished before its kill point", flush=True)


def _in_child(name: str, point: str) -> int:
    """Run the scenario in a forked child (imports already paid for) and return its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            run(name, point)
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _recover_in_process() -> tuple[int, list[str], str]:
    """The recovery both entry points call (harness.changes.recover), without paying for a new Python."""
    connection = open_connection("qemu:///system")
    try:
        recovery = recover(ChangeJournal(DEFAULT_JOURNAL), ChangeContext(HostRoot("/"), lambda: connection))
    except HostChangeError as exc:  # what the CLI would print and exit non-zero for
        return 1, [], str(exc)[-500:]
    finally:
        connection.close()
    return 0, recovery.undone, ""


def _recover_with(command: list[str]) -> tuple[int, list[str], str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    return (
        done.returncode,
        [line for line in done.stdout.splitlines() if "restored" in line],
        done.stderr[-500:],
    )


def _start_answering_guest(changes: HostChanges) -> AnsweringGuest:
    """The lab's answering guest, owned by the loop (alive throughout), so no recovery touches it."""
    image = GuestImage.load(Path(os.environ[GUEST_IMAGE_ENV]))
    machine = answering_guest_machine(image, HOTPLUG_GUEST, "qemu")
    assert machine.serial is not None
    fresh_serial_log(machine)
    guest = changes.make(TransientGuest(machine.name, machine.to_xml()))
    domain = guest.domain(changes.context)
    return AnsweringGuest(domain, machine, GuestConsole(Path(machine.serial.path)), time.time())


def loop(scenarios: set[str] | None = None) -> dict[str, Any]:
    host = _host()
    connection = open_connection("qemu:///system")
    owner = Owner.this_process(worker="kill-loop")
    mine = HostChanges(ChangeContext(host.root, lambda: connection), ChangeJournal(DEFAULT_JOURNAL), owner)
    try:
        return _loop(_start_answering_guest(mine), scenarios)
    finally:
        mine.undo_all()
        connection.close()


def _loop(answering: AnsweringGuest, scenarios: set[str] | None) -> dict[str, Any]:
    baseline = state()
    results = []
    restore = [str(BIN / "hostdev-harness"), "restore"]
    next_run = [
        str(BIN / "pytest"),
        str(REPO / "suites" / "test_assignment.py"),
        "--co",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    for number, (name, point) in enumerate(plan()):
        if scenarios and name not in scenarios:
            continue
        if name == "hotplug" and answering.boot_s is None:
            answering.wait_booted(ANSWERING_BOOT_TIMEOUT_S)
        started = time.monotonic()
        status = _in_child(name, point)
        # Every way back is exercised: the next pytest run (its controller recovers before any test),
        # `hostdev-harness restore`, and (for the rest, to keep the test cheap) the function both call.
        how = (
            "next pytest run"
            if number in (0, 13)
            else "hostdev-harness restore"
            if number % 8 == 1 or (name, point) == ("hotplug", "2")
            else "recover()"
        )
        if how == "next pytest run":
            rc, lines, errors = _recover_with(next_run)
        elif how == "hostdev-harness restore":
            rc, lines, errors = _recover_with(restore)
        else:
            rc, lines, errors = _recover_in_process()
        after = state()
        results.append(
            {
                "scenario": name,
                "point": point,
                "status": status,
                "recovery": how,
                "recovery_rc": rc,
                "restored": lines,
                "recovery_err": errors,
                "state_ok": after == baseline,
                "state": after,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    return {"baseline": baseline, "results": results, "answering_boot_s": answering.boot_s}


def main() -> None:
    command = sys.argv[1]
    if command == "plan":
        for item in plan():
            print(json.dumps(item))
    elif command == "run":
        run(sys.argv[2], sys.argv[3], *sys.argv[4:5])
    elif command == "state":
        print(json.dumps(state()))
    elif command == "loop":
        print(json.dumps(loop(set(sys.argv[2:]))))


if __name__ == "__main__":
    main()
