"""``hostdev-harness``: checks, inventory, snapshots and journal restore from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from harness.checks.preparation import CheckPlan, run_all
from harness.checks.result import Verdict
from harness.errors import HarnessError
from harness.host.host import Host
from harness.inventory import assess_all
from harness.libvirt.connection import (
    DEFAULT_URI,
    LibvirtUnavailableError,
    answers,
    is_local_system_uri,
    open_connection,
)
from harness.libvirt.daemon import private_libvirtd
from harness.libvirt.facts import LibvirtFacts, gather_libvirt_facts


@contextmanager
def _facts_source(uri: str) -> Iterator[LibvirtFacts]:
    """libvirt's facts from ``uri``, or from a private libvirtd when none answers on this machine."""
    if is_local_system_uri(uri) and not answers(uri):
        with private_libvirtd() as daemon:
            connection = open_connection(daemon.uri)
            try:
                yield gather_libvirt_facts(connection)
            finally:
                connection.close()
        return
    try:
        connection = open_connection(uri)
    except LibvirtUnavailableError as exc:
        yield LibvirtFacts.unreachable(uri, str(exc))
        return
    try:
        yield gather_libvirt_facts(connection)
    finally:
        connection.close()


@contextmanager
def _host(args: argparse.Namespace) -> Iterator[Host]:
    refuse = tuple(a for a in (args.refuse or "").split(",") if a)
    if args.snapshot:
        yield Host.from_snapshot(args.snapshot, refuse=refuse)
        return
    with _facts_source(args.uri) as facts:
        yield Host.local(libvirt_facts=lambda: facts, refuse=refuse)


def _check(args: argparse.Namespace) -> int:
    with _host(args) as host:
        results = run_all(host, CheckPlan(planned_devices=args.planned_devices))
    if args.json:
        print(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        for result in results:
            print(result.explain())
    worst = {result.verdict for result in results}
    return 1 if Verdict.FAIL in worst or (args.strict and Verdict.WARN in worst) else 0


def _inventory(args: argparse.Namespace) -> int:
    with _host(args) as host:
        assessments = assess_all(host)
    rows: list[dict[str, Any]] = [
        {
            "address": a.device.address,
            "nodedev": a.device.nodedev_name,
            "description": a.device.description,
            "driver": a.device.driver,
            "iommu_group": a.device.iommu_group,
            "group_members": list(a.group_members),
            "sriov_totalvfs": a.device.sriov_totalvfs,
            "sriov_numvfs": a.device.sriov_numvfs,
            "physfn": a.device.physfn,
            "virtfns": list(a.device.virtfns),
            "verdict": a.verdict,
            "reasons": a.reasons,
        }
        for a in assessments
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['address']}  {row['nodedev']}  {row['driver'] or '-':<12} group {row['iommu_group']}  "
                f"{row['verdict']}: {'; '.join(row['reasons']) or 'can be assigned'}"
            )
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from harness.host.snapshot import capture_snapshot

    with _host(args) as host:
        path = capture_snapshot(host, Path(args.destination))
    print(f"snapshot of {host.name} written to {path}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from harness.changes import ChangeContext, orphaned, recover
    from harness.host.root import HostRoot
    from harness.journal import DEFAULT_JOURNAL, ChangeJournal
    from harness.libvirt.daemon import connected

    journal = ChangeJournal(Path(args.journal or DEFAULT_JOURNAL))
    dead, live = orphaned(journal)
    for entry in live:
        print(f"left alone: a {entry.kind} change held by live {entry.owner} ({entry.change})")
    if not dead:
        print(f"nothing to restore ({journal.path})")
        return 0
    with ExitStack() as stack:  # libvirt only if an entry needs it (a VF count does not)
        context = ChangeContext(HostRoot("/"), lambda: stack.enter_context(connected(args.uri)))
        recovery = recover(journal, context)
    for line in recovery.undone:
        print(f"restored: {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostdev-harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def host_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--uri", default=DEFAULT_URI, help="libvirt URI (default %(default)s)")
        command.add_argument("--snapshot", help="read a host snapshot directory instead of this host")
        command.add_argument("--refuse", help="comma-separated PCI addresses to treat as host-critical")
        command.add_argument("--json", action="store_true", help="machine-readable output")

    check = commands.add_parser("check", help="run the preparation checks")
    host_options(check)
    check.add_argument("--strict", action="store_true", help="exit non-zero on WARN too")
    check.add_argument("--planned-devices", type=int, default=1, help="devices a guest is planned to take")
    check.set_defaults(run=_check)
    inventory = commands.add_parser("inventory", help="every PCI device and whether it can be assigned")
    host_options(inventory)
    inventory.set_defaults(run=_inventory)
    snapshot = commands.add_parser(
        "snapshot", help="capture this host into a directory (fixtures/hosts/NAME)"
    )
    host_options(snapshot)
    snapshot.add_argument("destination")
    snapshot.set_defaults(run=_snapshot)
    restore = commands.add_parser(
        "restore", help="undo device changes an interrupted run left in the journal"
    )
    restore.add_argument("--uri", default=DEFAULT_URI)
    restore.add_argument("--journal")
    restore.set_defaults(run=_restore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (FileNotFoundError, LibvirtUnavailableError, ValueError, HarnessError) as exc:
        print(f"hostdev-harness: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
