"""The plugin end to end on host snapshots: verdicts in JUnit, the summary, refusals, bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from lxml import etree

from harness.host.pci import PciDevice, enumerate_pci
from harness.host.root import HostRoot
from harness.plugin import devices
from harness.plugin.options import HarnessOptions, options_key
from harness.xml.address import PciAddress
from tests.synthetic_hosts import FIXTURES

SUITES = Path(__file__).resolve().parent.parent / "suites"


def run_suites(
    pytester: pytest.Pytester, snapshot: str, *args: str
) -> tuple[pytest.RunResult, etree._Element]:
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_preparation.py"),
        str(SUITES / "test_inventory.py"),
        str(SUITES / "test_assignment.py"),
        f"--harness-snapshot={FIXTURES / snapshot}",
        f"--junitxml={junit}",
        f"--harness-report-dir={pytester.path}",
        f"--harness-journal={pytester.path / 'journal.jsonl'}",
        "-p",
        "no:cacheprovider",
        *args,
    )
    return result, etree.parse(str(junit)).getroot()


def properties(testcase: etree._Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in testcase.iter("property")}


def test_machine_without_iommu_fails_with_hints(pytester: pytest.Pytester) -> None:
    result, junit = run_suites(pytester, "debian12-virtio")
    assert result.ret == 1
    cases = {case.get("name"): case for case in junit.iter("testcase")}
    firmware = properties(cases["test_preparation[iommu_firmware]"])
    assert firmware["harness.verdict"] == "FAIL"
    assert "intel-iommu" in firmware["harness.hint"]
    assert cases["test_preparation[iommu_firmware]"].find("failure") is not None
    summary = (pytester.path / "summary.txt").read_text()
    assert "Checking for an IOMMU in firmware (ACPI DMAR / IVRS)" in summary and ": FAIL" in summary
    assert "0000:00:03.0" in summary and "host-critical" in summary
    global_names = {p.get("name") for p in junit.iterfind("testsuite/properties/property")}
    assert {"hostname", "kernel", "cmdline"} <= global_names
    result.stdout.fnmatch_lines(["*hostdev-harness summary*", "*Checking for an IOMMU in firmware*FAIL*"])


def test_prepared_host_passes_and_warn_fails_only_when_strict(pytester: pytest.Pytester) -> None:
    result, _ = run_suites(pytester, "synthetic-intel-iommu-on")
    assert result.ret == 0, result.stdout.str()
    result, junit = run_suites(pytester, "synthetic-unsafe-interrupts")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*HarnessWarning*unsafe interrupts are allowed*"])
    result, junit = run_suites(pytester, "synthetic-unsafe-interrupts", "--harness-strict")
    assert result.ret == 1
    failed = [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert failed == ["test_preparation[interrupt_remapping]"]


def test_allowlisted_host_critical_device_is_refused(pytester: pytest.Pytester) -> None:
    result, junit = run_suites(pytester, "debian12-virtio", "--harness-allow=0000:00:03.0")
    assert result.ret == 1
    cases = {case.get("name"): case for case in junit.iter("testcase")}
    cycle = cases["test_detach_reattach_cycle[0000:00:03.0]"]
    assert "carries the default route (eth0)" in properties(cycle)["harness.refused"]
    failure = cycle.find("failure")
    assert failure is not None and "nothing was changed" in failure.get("message", "")
    assert not (pytester.path / "journal.jsonl").exists()


def test_malformed_allowlist_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(str(SUITES / "test_preparation.py"), "--harness-allow=eth0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'eth0' is not a PCI address*"])


@pytest.mark.parametrize("spelling", ["01:00.0", "pci_0000_01_00_0", "0000:01:00.0"])
def test_an_allowlisted_address_is_the_same_device_however_spelled(
    pytester: pytest.Pytester, spelling: str
) -> None:
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_assignment.py"),
        str(SUITES / "test_sriov.py"),
        f"--harness-snapshot={FIXTURES / 'synthetic-intel-iommu-on'}",
        f"--harness-allow={spelling}",
        "--co",
        "-q",
        "-p",
        "no:cacheprovider",
    )
    result.stdout.fnmatch_lines(
        [
            "*test_detach_reattach_cycle?0000:01:00.0?*",
            "*test_vfs_are_made_listed_assigned_and_removed?0000:01:00.0?*",
        ]
    )


def test_the_run_recovers_what_a_dead_owner_left_and_leaves_live_owners_alone(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any test, the run undoes a dead run's change and says so; this (live) process's is kept."""
    from harness.changes.journal import ChangeJournal, Owner
    from tests.test_changes import _dead_owner

    journal = ChangeJournal(tmp_path / "journal.jsonl")
    dead_file, live_file = tmp_path / "dead", tmp_path / "live"
    for path in (dead_file, live_file):
        path.write_text("changed")
    journal.record(
        "test_file_value", {"path": str(dead_file), "before": "orig", "value": "changed"}, _dead_owner()
    )
    live = Owner.this_process("live-run")
    journal.record("test_file_value", {"path": str(live_file), "before": "orig", "value": "changed"}, live)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    monkeypatch.setenv("PYTHONPATH", str(SUITES.parent))  # the test-only change kind lives in tests/
    result = pytester.runpytest_subprocess(
        "-p", "tests.test_changes", f"--harness-journal={journal.path}", "-p", "no:cacheprovider"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"*restored after an interrupted run: wrote orig back to {dead_file}*"])
    assert dead_file.read_text() == "orig" and live_file.read_text() == "changed"
    assert [entry.owner for entry in journal.pending()] == [live]


def test_the_suites_read_the_host_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each suite's parametrization asks for the devices; under TCG one enumeration takes over a second."""
    reads: list[HostRoot] = []

    def counted(root: HostRoot) -> list[PciDevice]:
        reads.append(root)
        return enumerate_pci(root)

    monkeypatch.setattr("harness.host.host.enumerate_pci", counted)  # read through the Host open_host gives
    snapshot = str(FIXTURES / "synthetic-intel-iommu-on")
    config = cast(pytest.Config, SimpleNamespace(stash=pytest.Stash()))
    config.stash[options_key] = HarnessOptions(snapshot=snapshot)
    first = devices.collected_devices(config)
    assert devices.collected_devices(config) is first
    assert len(reads) == 1, f"expected one enumeration per run, found {len(reads)}"
    address = PciAddress.from_bdf("0000:01:00.0")
    assert address in first and str(first[address].address) == "0000:01:00.0"


def test_the_plugin_leaves_hypothesis_and_the_lab_unimported() -> None:
    """Both cost seconds in L1 under TCG (measured there: 9.5 s and 1.8 s), where no suite needs them."""
    code = "import sys, harness.plugin; print(sorted({'hypothesis', 'harness.lab.lab'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing harness.plugin also imported {done.stdout.strip()}"
