"""Runs inside L1 for the rude host-side unplug: assigns a device to a guest, then reports what is left.

unplug_driver.py assign BDF          start a guest with no OS holding BDF (managed hostdev), through
                                     HostChanges and the default journal; this process then exits, so
                                     the journal entry's owner is gone (what `hostdev-harness restore`
                                     recovers); prints {"guest": NAME}
unplug_driver.py report BDF GUEST    harness.changes.unplug_report.host_unplug_report as one JSON line
"""

from __future__ import annotations

import json
import os
import sys

from harness.changes.guard import DeviceGuard
from harness.changes.guests import TransientGuest
from harness.changes.journal import DEFAULT_JOURNAL, ChangeJournal, Owner
from harness.changes.protocol import ChangeContext, HostChanges
from harness.changes.unplug_report import host_unplug_report
from harness.host.pci import parse_pci_address
from harness.libvirt.connection import open_connection
from harness.libvirt.guests import guest_with_hostdevs
from harness.opening import open_host
from harness.xml.address import PciAddress
from harness.xml.hostdev import PciHostdev

ALLOWED = [parse_pci_address(a) for a in os.environ.get("HARNESS_ALLOW", "").split(",") if a]


def main() -> None:
    command, bdf = sys.argv[1], sys.argv[2]
    source = PciAddress.from_bdf(bdf)
    host = open_host()
    connection = open_connection("qemu:///system")
    context = ChangeContext(host.root, lambda: connection)
    journal = ChangeJournal(DEFAULT_JOURNAL)
    if command == "assign":
        # The device was hotplugged into L1 by the test itself: allowed for this run only.
        guard = DeviceGuard(host, [*ALLOWED, source])
        changes = HostChanges(context, journal, Owner.this_process(worker="unplug-driver"), guard)
        guest = guest_with_hostdevs((PciHostdev(source=source, managed=True),), "qemu")
        changes.make(TransientGuest.of(guest))
        print(json.dumps({"guest": guest.name}))
    elif command == "report":
        print(json.dumps(host_unplug_report(context, journal, source, sys.argv[3]).to_dict()))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
