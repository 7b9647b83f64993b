"""Shared state under stress, inside the default lab: SIGKILL at many moments of real changes, and two
xdist workers contending for the same IOMMU groups. Nothing may be lost, shared or left changed."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from lxml import etree

from harness.changes.leases import overlapping_holders, read_audit
from harness.lab.lab import Lab
from tests.nested.conftest import L1_PYTEST, REPO, VENV_BIN, checked_exec

pytestmark = pytest.mark.nested
DRIVER = REPO / "tests" / "nested" / "kill_driver.py"
CONTENTION_RUNS = 2


def _state(lab: Lab) -> dict[str, object]:
    state: dict[str, object] = json.loads(checked_exec(lab, f"{VENV_BIN}/python {DRIVER} state").strip())
    return state


def test_sigkill_at_any_moment_then_everything_is_put_back(default_lab: Lab, record_property: object) -> None:
    """Each kill point: a scenario (detach, managed guest, unmanaged guest, VFs, shared group, a device
    hotplugged into a running guest) is killed with SIGKILL; the next run, `hostdev-harness restore`, or
    the recovery they share puts it all back."""
    output = checked_exec(default_lab, f"cd {REPO} && {VENV_BIN}/python {DRIVER} loop")
    summary = json.loads(output.strip().splitlines()[-1])
    results = summary["results"]
    assert len(results) >= 20, f"expected at least 20 kill points, ran {len(results)}"
    for result in results:
        where = f"{result['scenario']} killed at {result['point']}"
        assert result["status"] == -9, f"{where}: the driver was not killed by SIGKILL ({result})"
        assert result["recovery_rc"] == 0, f"{where}: {result['recovery']} failed: {result['recovery_err']}"
        assert result["state_ok"], (
            f"{where}: after {result['recovery']} the lab is not as before: expected {summary['baseline']}, "
            f"found {result['state']}; reproduce: hostdev-lab exec -- {VENV_BIN}/python {DRIVER} "
            f"run {result['scenario']} {result['point']}"
        )
    # Killed mid-change, something was pending; recovery said what it restored.
    said = [r for r in results if r["restored"]]
    assert said, f"no recovery said what it restored: {results}"
    ways = {r["recovery"] for r in results}
    assert ways == {"next pytest run", "hostdev-harness restore", "recover()"}, ways
    # Killed with a device hotplugged into the running answering guest: recovery detached it from the
    # guest (DEVICE_REMOVED, live XML) and gave it back to its host driver (state_ok above).
    hotplugged = [r for r in results if r["scenario"] == "hotplug" and r["point"] != "0"]
    assert len(hotplugged) == 4, f"expected 4 hotplug kill points after the attach, ran {hotplugged}"
    detached = [r for r in hotplugged if any("DEVICE_REMOVED" in line for line in r["restored"])]
    assert detached, f"no recovery detached a hotplugged device from the running guest: {hotplugged}"
    record_property("harness.answering_boot_s", summary["answering_boot_s"])  # type: ignore[operator]
    record_property("harness.hotplug_kill_s", [r["seconds"] for r in hotplugged])  # type: ignore[operator]


def test_two_workers_never_share_a_group_and_all_is_restored(default_lab: Lab) -> None:
    """`pytest -n 2` over the suites that change devices, twice: tests of one device land on both
    workers at once; the lease audit shows no group with two holders, and every device is back."""
    baseline = _state(default_lab)
    selection = "detach_reattach or managed_hostdev or vfs_are_made"
    for _ in range(CONTENTION_RUNS):
        run_dir = REPO / "reports" / f"contention-{uuid.uuid4().hex[:8]}"
        try:
            rc, output = default_lab.exec(
                f"cd {REPO} && {L1_PYTEST} {REPO}/suites/test_assignment.py {REPO}/suites/test_sriov.py "
                f"-n 2 -k '{selection}' --harness-lease-dir {run_dir}/leases "
                f"--harness-report-dir {run_dir} --junitxml {run_dir}/junit.xml"
            )
            junit = etree.parse(str(run_dir / "junit.xml")).getroot()
            cases = list(junit.iter("testcase"))
            bad = [
                case.get("name")
                for case in cases
                if any(case.find(kind) is not None for kind in ("failure", "error", "skipped"))
            ]
            assert cases and not bad, f"failed or skipped under -n 2: {bad}\n{output[-4000:]}"
            assert rc == 0, output[-3000:]
            audit = read_audit(run_dir / "leases")
            workers = {str(dict(record["owner"])["worker"]) for record in audit}  # type: ignore[call-overload]
            assert workers == {"gw0", "gw1"}, f"expected both workers to take leases, saw {workers}"
            assert overlapping_holders(audit) == []
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        assert _state(default_lab) == baseline
