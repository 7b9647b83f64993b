"""A fleet run on tmt, end to end: ``tmt run`` drives the shipped suites on a nested host over SSH on
loopback (``provision --how connect``) and on this machine (``provision --how local``), collects each
host's JUnit and report.json, and ``hostdev-harness merge`` labels both hosts in one fleet report.

Two hosts without two labs (2 cores): the lab reached over SSH, and this machine itself, whose suites
run read-only (no HARNESS_ALLOW). Only the quick suites run (preparation, inventory).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from harness.errors import EXIT_NOT_READY, EXIT_READY
from harness.lab.lab import Lab
from tests.nested.conftest import REPO, VENV_BIN

pytestmark = [pytest.mark.nested, pytest.mark.harness_lab_spec("fleet")]

TMT = VENV_BIN / "tmt"
SUITES = "preparation,inventory"
PLAN = "/plans/fleet/nightly"
# What tmt's shell framework makes of the test's exit code (validate: 0 ready, 1 not ready).
TMT_RESULT_OF_VERDICT = {"PASS": "pass", "WARN": "pass", "FAIL": "fail"}


def _tmt_run(workdir: Path, *provision: str) -> subprocess.CompletedProcess[str]:
    """The fleet plan as a nightly job runs it, on the harness of this checkout (same path in L1)."""
    argv = [
        str(TMT), "--feeling-safe", "run", "--id", str(workdir), "--all",
        "-e", f"HOSTDEV_FLEET_SUITES={SUITES}", "-e", f"HOSTDEV_HARNESS={VENV_BIN / 'hostdev-harness'}",
        "plan", "--name", PLAN, "provision", *provision,
    ]  # fmt: skip
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)


def _tmt_said(workdir: Path, run: subprocess.CompletedProcess[str]) -> str:
    """Where to look when a tmt run went wrong: its exit code, its log, the tail of what it printed."""
    return (
        f"tmt exited {run.returncode}; its log: {workdir / 'log.txt'}\n--- what tmt printed (tail) ---\n"
        f"{run.stdout[-2500:]}{run.stderr[-2500:]}"
    )


def _collected(workdir: Path, run: subprocess.CompletedProcess[str]) -> tuple[dict[str, Any], Path, Any]:
    """tmt's result for /fleet/validate, and the report.json and junit.xml tmt copied back from the host."""
    plan_dir = workdir / PLAN.lstrip("/")
    results_file = plan_dir / "execute" / "results.yaml"
    assert results_file.exists(), (
        f"expected tmt's results in {results_file}, found none; {_tmt_said(workdir, run)}"
    )
    results = {result["name"]: result for result in yaml.safe_load(results_file.read_text()) or []}
    assert "/fleet/validate" in results, (
        f"expected a result for /fleet/validate, tmt ran {list(results)}; {_tmt_said(workdir, run)}"
    )
    result = results["/fleet/validate"]
    # A test that never ran (a prepare phase failed) has a result without data or log: say why, not TypeError.
    assert result.get("data-path") and result.get("log"), (
        f"expected /fleet/validate to have run, tmt recorded {result.get('result')!r} with no data/log "
        f"({result.get('note')}); {_tmt_said(workdir, run)}"
    )
    data = plan_dir / "execute" / result["data-path"]
    output = plan_dir / "execute" / result["log"][0]
    assert (data / "report.json").exists(), f"no report.json came back from the host; {output}:\n" + (
        output.read_text()[-3000:] if output.exists() else "(no output)"
    )
    tmt_junit = plan_dir / "report" / "default-0" / "junit.xml"
    assert tmt_junit.exists(), f"tmt's own JUnit report is missing ({tmt_junit})"
    return result, data, etree.parse(str(data / "junit.xml")).getroot()


def _suite_properties(junit: Any) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in junit.iterfind("testsuite/properties/property")}


def test_tmt_runs_the_suites_over_ssh_and_merge_labels_each_host(lab: Lab, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    assert lab.ssh is not None, "the fleet lab has [access] ssh = true"
    access = lab.ssh
    assert access.key.stat().st_mode & 0o077 == 0, f"{access.key} must be private (0600)"
    recorded = json.loads((lab.state_dir / "lab.json").read_text())
    assert recorded["ssh"]["port"] == access.port == recorded["ports"]["ssh"], recorded["ssh"]

    # A plain login with the lab's key, checking the host key lab.json pins (no trust on first use).
    started = time.monotonic()
    login = subprocess.run(
        [*access.command, "-o", "BatchMode=yes", "hostname"], capture_output=True, text=True, timeout=300
    )
    timings["ssh login"] = time.monotonic() - started
    assert login.returncode == 0 and login.stdout.strip() == f"lab-{lab.name}", (
        f"ssh into L1 failed ({login.returncode}): {login.stderr[-1500:]}\nreproduce: "
        f"{recorded['ssh']['command']} hostname\nconsole tail:\n{lab.console_tail(15)}"
    )

    # tmt over SSH on loopback: the nested host, fully prepared, passes the suites.
    lab_run = tmp_path / "tmt-lab"
    started = time.monotonic()
    ran = _tmt_run(
        lab_run, "--how", "connect", "--guest", "127.0.0.1", "--port", str(access.port),
        "--user", access.user, "--key", str(access.key),
    )  # fmt: skip
    timings["tmt run (connect, lab)"] = time.monotonic() - started
    result, data, junit = _collected(lab_run, ran)
    assert ran.returncode == 0 and result["result"] == "pass", (
        f"tmt run against the lab: exit {ran.returncode}, result {result['result']}; "
        f"see {lab_run}/log.txt\n{(data.parent / 'output.txt').read_text()[-3000:]}"
    )
    assert result["guest"]["primary-address"] == "127.0.0.1", result["guest"]
    assert _suite_properties(junit)["hostname"] == f"lab-{lab.name}", "the JUnit names its host"
    cases = {case.get("name"): case for case in junit.iter("testcase")}
    assert any(name.startswith("test_preparation[") for name in cases), list(cases)
    assert any(name.startswith("test_device[") for name in cases), list(cases)  # the inventory suite
    broken = [
        name
        for name, case in cases.items()
        if case.find("failure") is not None or case.find("error") is not None
    ]
    assert not broken, f"failed in the lab: {broken}"
    verdicts = {
        name: {p.get("name"): p.get("value") for p in case.iter("property")}.get("harness.verdict")
        for name, case in cases.items()
    }
    for check in ("iommu_firmware", "iommu_kernel", "interrupt_remapping", "vfio_ready", "libvirt_ready"):
        assert verdicts[f"test_preparation[{check}]"] == "PASS", (check, verdicts)

    # The same plan on this machine (provision local): a second host, read-only, with its own verdict.
    local_run = tmp_path / "tmt-local"
    started = time.monotonic()
    ran_here = _tmt_run(local_run, "--how", "local")
    timings["tmt run (local, this machine)"] = time.monotonic() - started
    here, here_data, here_junit = _collected(local_run, ran_here)
    here_report = json.loads((here_data / "report.json").read_text())
    assert (
        _suite_properties(here_junit)["hostname"] == socket.gethostname() == here_report["host"]["hostname"]
    )
    assert here["result"] == TMT_RESULT_OF_VERDICT[here_report["verdict"]], (
        here["result"],
        here_report["verdict"],
    )

    # One fleet report, one row per host, labelled by hostname.
    lab_report = json.loads((data / "report.json").read_text())
    fleet_dir = tmp_path / "fleet"
    merged = subprocess.run(
        [VENV_BIN / "hostdev-harness", "merge", "--output", str(fleet_dir), str(lab_run), str(local_run)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    fleet = json.loads((fleet_dir / "fleet.json").read_text())
    verdicts_by_host = {host["label"]: host["verdict"] for host in fleet["hosts"]}
    assert verdicts_by_host == {
        f"lab-{lab.name}": lab_report["verdict"],
        socket.gethostname(): here_report["verdict"],
    }, verdicts_by_host
    worst_is_fail = "FAIL" in verdicts_by_host.values()
    assert merged.returncode == (EXIT_NOT_READY if worst_is_fail else EXIT_READY), merged.stderr
    html = (fleet_dir / "fleet.html").read_text()
    assert f"lab-{lab.name}" in html and socket.gethostname() in html
    print("fleet wall times: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()))
