"""``hostdev-harness``: checks, inventory, snapshots, journal restore and the shipped suites.

Exit codes: 0 ready (or done), 1 not ready, 2 usage or input error, 3 internal error,
130 interrupted, 141 output pipe closed (see ``harness/command.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.checks.preparation import NEEDS_LIBVIRT, PREPARATION_CHECKS, CheckPlan, run_check
from harness.checks.result import CheckResult, Verdict
from harness.command import OneLineParser, StoreOnce, run_command
from harness.errors import EXIT_NOT_READY, EXIT_READY, HarnessError, HarnessInputError
from harness.host.host import Host
from harness.host.pci import parse_pci_address
from harness.inventory import assess_all
from harness.libvirt.connection import DEFAULT_URI
from harness.opening import open_host
from harness.report.model import check_document, host_block, inventory_rows, opened_host
from harness.xml.address import PciAddress

PROG = "hostdev-harness"


def _refuse(text: str | None) -> tuple[PciAddress, ...]:
    return tuple(parse_pci_address(a) for a in (text or "").split(",") if a.strip())


def _open(args: argparse.Namespace) -> Host:
    return open_host(args.snapshot, args.uri, _refuse(args.refuse))


def _check(args: argparse.Namespace) -> int:
    plan = CheckPlan(planned_devices=args.planned_devices)
    results: dict[str, CheckResult] = {}
    # Checks that need libvirt last: the others answer at once even when libvirt must be started first.
    order = sorted(PREPARATION_CHECKS, key=lambda name: name in NEEDS_LIBVIRT)
    machine = args.json or args.json_list
    with _open(args) as host:
        vm = host.virtual_machine
        if vm is not None and not machine:  # said once here; each check's evidence says what it means
            print(f"Note: {vm.summary()}", flush=True)
        for name in order:
            results[name] = run_check(name, host, plan)
            if not machine:
                print(results[name].explain(), flush=True)
        identity = opened_host(host, libvirt=True)
    document = check_document(
        host_block(args.snapshot, identity),
        [results[name] for name in PREPARATION_CHECKS],
        list(PREPARATION_CHECKS),
    )
    verdicts = {result.verdict for result in results.values()}
    not_ready = Verdict.FAIL in verdicts or (args.strict and Verdict.WARN in verdicts)
    if args.json_list:  # the plain list --json gave before it became an object
        print(json.dumps(document["checks"], indent=2))
    elif args.json:
        print(json.dumps(document, indent=2))
    else:  # the last line says it all (virt-host-validate leaves the reader to add it up)
        print(f"Overall verdict: {document['verdict']} ({document['counts']})", flush=True)
    return EXIT_NOT_READY if not_ready else EXIT_READY


def _inventory(args: argparse.Namespace) -> int:
    with _open(args) as host:
        assessments = assess_all(host)
    rows = inventory_rows(assessments)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['address']}  {row['nodedev']}  {row['driver'] or '-':<12} group {row['iommu_group']}  "
                f"{row['verdict']}: {'; '.join(row['reasons']) or 'can be assigned'}"
            )
            print(f"    isolation: {row['acs_path']}")
            if row["group_reason"]:
                print(f"    shares group {row['iommu_group']}: {row['group_reason']}")
    return EXIT_READY


def _snapshot(args: argparse.Namespace) -> int:
    from harness.host.snapshot import capture_snapshot

    with open_host(None, args.uri) as host:
        path, redacted = capture_snapshot(host, Path(args.destination), force=args.force)
    print(f"snapshot written to {path}; redacted: {', '.join(redacted) or 'nothing'}")
    return EXIT_READY


def _restore(args: argparse.Namespace) -> int:
    from harness.changes.journal import DEFAULT_JOURNAL, ChangeJournal
    from harness.changes.protocol import orphaned, recover_host

    if args.journal is not None and not args.journal.strip():
        # An empty --journal must not silently mean the system journal.
        raise HarnessInputError(
            f"--journal is empty; name a journal file or leave it out for {DEFAULT_JOURNAL}"
        )
    path = Path(args.journal) if args.journal else DEFAULT_JOURNAL
    if path.is_dir():
        raise HarnessInputError(f"--journal {path} is a directory; give the journal file ({DEFAULT_JOURNAL})")
    if args.journal and not path.exists():
        raise HarnessInputError(f"--journal {path} does not exist; the default journal is {DEFAULT_JOURNAL}")
    journal = ChangeJournal(path)
    try:
        dead, live = orphaned(journal)
    except HarnessError:
        raise
    except Exception as exc:  # whatever the reader trips over in a file the user named is a bad journal
        raise HarnessInputError(
            f"journal {path} cannot be read ({type(exc).__name__}: {exc}); nothing was changed; "
            "inspect it, or move it away if its changes were undone by hand"
        ) from None
    for entry in live:
        print(f"left alone: a {entry.kind} change held by live {entry.owner} ({entry.change})")
    if not dead:
        print(f"nothing to restore ({journal.path})")
        return EXIT_READY
    for line in recover_host(journal, args.uri).undone:
        print(f"restored: {line}")
    return EXIT_READY


def _validate(args: argparse.Namespace) -> int:
    from harness.suites_runner import run_suites

    return run_suites(args.snapshot, args.uri, args.report_dir, args.pytest_args, args.suite or ())


def _merge(args: argparse.Namespace) -> int:
    from harness.report.fleet import write_fleet_report

    fleet = write_fleet_report(args.inputs, Path(args.output))
    labels = ", ".join(f"{host['label']} {host['verdict']}" for host in fleet["hosts"])
    print(f"fleet report ({fleet['verdict']}: {labels}) written to {args.output}/fleet.html and fleet.json")
    return EXIT_NOT_READY if fleet["verdict"] == "FAIL" else EXIT_READY


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def host_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--uri", action=StoreOnce, default=DEFAULT_URI, help="libvirt URI (default %(default)s)"
        )
        command.add_argument(
            "--snapshot", action=StoreOnce, help="read a host snapshot directory instead of this host"
        )
        command.add_argument(
            "--refuse", action=StoreOnce, help="comma-separated PCI addresses to treat as host-critical"
        )
        command.add_argument("--json", action="store_true", help="machine-readable output")

    check = commands.add_parser("check", help="run the preparation checks")
    host_options(check)
    check.add_argument("--strict", action="store_true", help="exit 1 on WARN too")
    check.add_argument(
        "--json-list", action="store_true", help="the checks as a plain JSON list (no host, verdict)"
    )
    check.add_argument(
        "--planned-devices", type=_positive, default=1, help="devices a guest is planned to take"
    )
    check.set_defaults(run=_check)
    inventory = commands.add_parser("inventory", help="every PCI device and whether it can be assigned")
    host_options(inventory)
    inventory.set_defaults(run=_inventory)
    snapshot = commands.add_parser(
        "snapshot", help="capture this host, redacted, into a new directory (fixtures/hosts/NAME)"
    )
    snapshot.add_argument(
        "--uri", action=StoreOnce, default=DEFAULT_URI, help="libvirt URI (default %(default)s)"
    )
    snapshot.add_argument("--force", action="store_true", help="replace a previous snapshot at DESTINATION")
    snapshot.add_argument("destination")
    snapshot.set_defaults(run=_snapshot)
    restore = commands.add_parser(
        "restore", help="undo device changes an interrupted run left in the journal"
    )
    restore.add_argument("--uri", action=StoreOnce, default=DEFAULT_URI)
    restore.add_argument(
        "--journal",
        action=StoreOnce,
        help="the journal file (default /var/lib/hostdev-harness/journal.jsonl)",
    )
    restore.set_defaults(run=_restore)
    validate = commands.add_parser(
        "validate", help="run the shipped suites (pytest) against this host or a snapshot"
    )
    validate.add_argument(
        "--uri", action=StoreOnce, default=DEFAULT_URI, help="libvirt URI (default %(default)s)"
    )
    validate.add_argument(
        "--snapshot", action=StoreOnce, help="check a host snapshot directory instead of this host"
    )
    validate.add_argument("--report-dir", action=StoreOnce, help="where the reports go (default reports/)")
    validate.add_argument(
        "--suite",
        action="append",
        metavar="NAME",
        help="run only this suite (repeatable; e.g. preparation, inventory); default: every suite",
    )
    validate.add_argument("pytest_args", nargs="*", help="-- further pytest arguments")
    validate.set_defaults(run=_validate)
    merge = commands.add_parser(
        "merge",
        help="merge several hosts' report.json (files or folders, e.g. a tmt run) into one fleet report",
    )
    merge.add_argument(
        "--output",
        action=StoreOnce,
        default="reports",
        help="folder for fleet.html and fleet.json (default reports)",
    )
    merge.add_argument("inputs", nargs="+", help="report.json files or folders holding them")
    merge.set_defaults(run=_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        return int(args.run(args))

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
