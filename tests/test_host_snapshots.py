"""The checks and the inventory against host snapshots, each with the verdicts it must get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checks.preparation import run_all
from harness.inventory import assess_all
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES, synthetic_hosts, write_host

SNAPSHOTS = sorted(path.parent for path in FIXTURES.glob("*/expected.json"))


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_snapshot_verdicts(snapshot: Path) -> None:
    expected = json.loads((snapshot / "expected.json").read_text())
    host = open_host(snapshot)
    results = {result.name: result for result in run_all(host)}
    for name, verdict in expected.get("checks", {}).items():
        assert str(results[name].verdict) == verdict, (
            f"{snapshot.name}: check {name} expected {verdict}, found {results[name].verdict}\n{results[name].explain()}"
        )
    for name, fragment in expected.get("hints", {}).items():
        assert fragment in (results[name].hint or ""), (
            f"{snapshot.name}: hint of {name} lacks {fragment!r}\n{results[name].explain()}"
        )
    for name, fragment in expected.get("evidence", {}).items():
        assert any(fragment in line for line in results[name].evidence), (
            f"{snapshot.name}: evidence of {name} lacks {fragment!r}\n{results[name].explain()}"
        )
    assessments = {str(a.device.address): a for a in assess_all(host)}
    for address, verdict in expected.get("devices", {}).items():
        assert assessments[address].verdict == verdict, (
            f"{snapshot.name}: {address} expected {verdict}, found {assessments[address].verdict} "
            f"({assessments[address].explain()})"
        )
    for address, fragment in expected.get("reasons", {}).items():
        assert fragment in assessments[address].explain()
    for address, fragment in expected.get("acs_path", {}).items():
        assert fragment in assessments[address].acs_path, (
            f"{snapshot.name}: {address} isolation should say {fragment!r}: {assessments[address].acs_path}"
        )
    for address, reason in expected.get("group_reason", {}).items():
        found = assessments[address].group_reason
        assert (reason is None and found is None) or (reason is not None and reason in (found or "")), (
            f"{snapshot.name}: {address} group reason should be {reason!r}, found {found!r}"
        )


@pytest.mark.parametrize("synthetic", synthetic_hosts(), ids=lambda host: host.name)
def test_committed_synthetic_snapshot_is_current(synthetic, tmp_path: Path) -> None:
    """fixtures/hosts/synthetic-* are what tests/synthetic_hosts.py writes (regenerate with python -m)."""
    write_host(synthetic, tmp_path / synthetic.name)
    committed = FIXTURES / synthetic.name
    assert _entries(tmp_path / synthetic.name) == _entries(committed), (
        f"{committed} is stale: run python -m tests.synthetic_hosts"
    )


def _entries(root: Path) -> dict[str, str]:
    """Files and links with their content or target (git keeps no empty folders, so those don't count)."""
    entries = {}
    for path in root.rglob("*"):
        if path.is_symlink():
            entries[str(path.relative_to(root))] = "-> " + str(path.readlink())
        elif path.is_file():
            entries[str(path.relative_to(root))] = path.read_bytes().hex()
    return entries


def test_every_check_has_a_hint_when_not_passing() -> None:
    for snapshot in SNAPSHOTS:
        for result in run_all(open_host(snapshot)):
            if str(result.verdict) != "PASS":
                assert result.hint, f"{snapshot.name}: {result.name} is {result.verdict} without a hint"


def test_a_nested_host_is_named_once_in_the_summary_and_per_check_in_evidence() -> None:
    from harness.report.properties import check_properties
    from harness.report.run_report import TestRecord, build_report
    from harness.report.summary import render_summary

    host = open_host(FIXTURES / "synthetic-nested-qemu")
    assert host.virtual_machine is not None and host.virtual_machine.hypervisor == "QEMU"
    records = [TestRecord(r.name, properties=list(check_properties(r))) for r in run_all(host)]
    report = build_report(records, {"virtual_machine": host.virtual_machine.summary()}, [], None)
    summary = render_summary(report)
    assert summary.count("this host is a virtual machine (QEMU") == 1, summary
    bare = open_host(FIXTURES / "synthetic-intel-iommu-on")
    assert bare.virtual_machine is None
    assert not any("nested host" in line for result in run_all(bare) for line in result.evidence)
