#!/usr/bin/env python3
"""Benchmark detach/reattach cycles inside the nested host: what the harness's verification costs.

    .venv/bin/python benchmarks/bench_cycles.py               # boots the default lab, 20 cycles x 3 rounds
    .venv/bin/python benchmarks/bench_cycles.py --lab NAME    # use a lab already up (hostdev-lab up)

Three ways to cycle one allowlisted e1000e, measured in the same run, interleaved round by round:
- harness: ``HostChanges.make(DriverDetach)`` + undo: guard, journal (fsync'd, locked), sysfs driver
  wait, ``/dev/vfio/<group>``, then reattach verified;
- libvirt: the same libvirt-python calls (``detachFlags`` / ``reAttach``) with no verification;
- virsh: ``virsh nodedev-detach X && virsh nodedev-reattach X`` as subprocesses, as a shell script would.
Ratios: harness / libvirt (goal <= 1.15) and virsh / harness (goal >= 2).
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
import json, os, statistics, subprocess, sys, time, tempfile
from pathlib import Path
from harness.changes.protocol import ChangeContext, HostChanges
from harness.changes.driver_detach import DriverDetach
from harness.changes.guard import DeviceGuard
from harness.host.host import Host
from harness.opening import open_host
from harness.host.pci import parse_pci_address
from harness.changes.journal import ChangeJournal, Owner
from harness.libvirt.connection import open_connection

cycles, rounds = int(sys.argv[1]), int(sys.argv[2])
allowed = [parse_pci_address(a) for a in os.environ["HARNESS_ALLOW"].split(",")]
host = open_host()
device = next(host.pci.get(a) for a in allowed if host.pci.get(a).driver == "e1000e")
connection = open_connection("qemu:///system")
changes = HostChanges(ChangeContext(host.root, lambda: connection),
                      ChangeJournal(Path(tempfile.mkdtemp()) / "journal.jsonl"), Owner.this_process(),
                      DeviceGuard(host, allowed))
node = connection.nodeDeviceLookupByName(device.nodedev_name)

def harness():
    change = changes.make(DriverDetach.of(device))
    changes.undo(change)

def raw():
    node.detachFlags("vfio", 0)
    node.reAttach()

def virsh():
    subprocess.run(["virsh", "nodedev-detach", device.nodedev_name], check=True, capture_output=True)
    subprocess.run(["virsh", "nodedev-reattach", device.nodedev_name], check=True, capture_output=True)

ways = {"harness": harness, "libvirt": raw, "virsh": virsh}
for way in ways.values():
    way()  # warm every path once
seconds = {name: [] for name in ways}
for _ in range(rounds):
    for name, way in ways.items():
        started = time.perf_counter()
        for _ in range(cycles):
            way()
        seconds[name].append((time.perf_counter() - started) / cycles)
print(json.dumps({"device": str(device.address), "driver": device.driver,
                  "per_cycle_s": {n: round(statistics.median(s), 4) for n, s in seconds.items()}}))
"""


def measure(lab: Lab, cycles: int, rounds: int) -> dict[str, Any]:
    result = run_inside(lab, "bench_cycles", INSIDE, cycles, rounds)
    per = result["per_cycle_s"]
    result["harness_over_libvirt"] = round(per["harness"] / per["libvirt"], 3)
    result["virsh_over_harness"] = round(per["virsh"] / per["harness"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", help="name of a lab already up (default: boot the default lab)")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with chosen_lab(args.lab, "bench-cycles") as lab:
        result = measure(lab, args.cycles, args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
