#!/usr/bin/env python3
"""Benchmark VF allocation inside the nested host: a libvirt VF pool against explicit ``<hostdev>`` VFs.

    .venv/bin/python benchmarks/bench_pool.py               # boots the default lab (it has an igb)
    .venv/bin/python benchmarks/bench_pool.py --lab NAME    # use a lab already up (hostdev-lab up)

On the lab's SR-IOV NIC (igb) the harness makes N VFs (autoprobe off), brings the PF up and defines a pool
``<forward mode='hostdev' managed='yes'><pf dev=.../></forward>`` (all through ``HostChanges``, undone at
the end). Then, interleaved round by round in the same run, N no-OS guests are started one after another
and destroyed:
- pool: ``<interface type='network'>`` on the pool, libvirt picks a free VF and sets the guest's MAC;
- hostdev: ``<hostdev managed='yes'>`` naming each VF, no MAC set.
Reported: allocations (guest starts holding a VF) per second for each, and pool / hostdev.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.in_lab import chosen_lab, run_inside  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402

INSIDE = r"""
import json, os, statistics, sys, tempfile, time
from pathlib import Path
from harness.changes.protocol import ChangeContext, HostChanges
from harness.changes.sriov import VfAutoprobe, VfCount
from harness.changes.guard import DeviceGuard
from harness.host.host import Host
from harness.opening import open_host
from harness.host.pci import parse_pci_address
from harness.changes.journal import ChangeJournal, Owner
from harness.libvirt.connection import open_connection
from harness.libvirt.guests import guest_with_hostdevs
from harness.changes.networks import DefinedNetwork
from harness.libvirt.networks import vf_pool
from harness.changes.link_state import LinkState
from harness.host.netdevs import netdev_names
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import NetworkInterface

count, rounds = int(sys.argv[1]), int(sys.argv[2])
allowed = [parse_pci_address(a) for a in os.environ["HARNESS_ALLOW"].split(",")]
host = open_host()
pf = next(host.pci.get(a) for a in allowed if host.pci.get(a).is_sriov_pf and netdev_names(host.root, a))
netdev = netdev_names(host.root, pf.address)[0]
connection = open_connection("qemu:///system")
changes = HostChanges(ChangeContext(host.root, lambda: connection),
                      ChangeJournal(Path(tempfile.mkdtemp()) / "journal.jsonl"), Owner.this_process(),
                      DeviceGuard(host, allowed))
try:
    changes.make(VfAutoprobe.of(host.root, pf, enabled=False))
    changes.make(VfCount.of(host.root, pf, count))
    changes.make(LinkState.of(host.root, netdev, up=True))
    pool = changes.make(DefinedNetwork.of(vf_pool(pf=netdev)))
    host.refresh_devices()
    vfs = host.pci.get(pf.address).virtfns

    def pool_guests():
        return [guest_with_hostdevs((NetworkInterface(pool.name, mac=f"52:54:00:4c:00:{n:02x}"),), "qemu")
                for n in range(count)]

    def hostdev_guests():
        return [guest_with_hostdevs((PciHostdev(source=vf, managed=True),), "qemu")
                for vf in vfs]

    def cycle(guests):
        started = time.perf_counter()
        domains = [connection.createXML(g.to_xml(), 0) for g in guests]
        elapsed = time.perf_counter() - started
        for domain in domains:
            domain.destroy()
        return elapsed

    ways = {"pool": pool_guests, "hostdev": hostdev_guests}
    for way in ways.values():
        cycle(way())  # warm: QEMU capabilities, first VF detach
    seconds = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            seconds[name].append(cycle(way()))
    per = {name: statistics.median(s) / count for name, s in seconds.items()}
    print(json.dumps({"pf": str(pf.address), "vfs": count, "rounds": rounds,
                      "per_start_s": {n: round(v, 3) for n, v in per.items()},
                      "allocations_per_s": {n: round(1 / v, 3) for n, v in per.items()}}))
finally:
    changes.undo_all()
"""


def measure(lab: Lab, count: int, rounds: int) -> dict[str, Any]:
    result = run_inside(lab, "bench_pool", INSIDE, count, rounds)
    rates = result["allocations_per_s"]
    result["pool_over_hostdev"] = round(rates["pool"] / rates["hostdev"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", help="name of a lab already up (default: boot the default lab)")
    parser.add_argument("--guests", type=int, default=3, help="VFs, and guests started per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with chosen_lab(args.lab, "bench-pool") as lab:
        result = measure(lab, args.guests, args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
