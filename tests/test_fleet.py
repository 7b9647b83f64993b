"""Several hosts' runs merge into one fleet report, labelled per host; the tmt metadata is well-formed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from harness.errors import EXIT_NOT_READY, EXIT_USAGE
from tests.synthetic_hosts import FIXTURES

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run_suites(snapshot: str, folder: Path) -> None:
    subprocess.run(
        [BIN / "pytest", "suites/test_preparation.py", "suites/test_inventory.py", "-q", "-p", "no:cacheprovider",
         f"--harness-snapshot={FIXTURES / snapshot}", f"--harness-report-dir={folder}"],
        cwd=REPO, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert (folder / "report.json").exists(), f"no report.json from the run on {snapshot}"


def test_two_hosts_merge_into_one_fleet_report(tmp_path: Path) -> None:
    runs = tmp_path / "run"  # laid out like a tmt workdir: one data folder per host
    _run_suites("synthetic-intel-iommu-on", runs / "guest-a" / "data")
    _run_suites("debian12-virtio", runs / "guest-b" / "data")
    out = tmp_path / "fleet"
    merged = subprocess.run(
        [BIN / "hostdev-harness", "merge", "--output", str(out), str(runs)], capture_output=True, text=True
    )
    assert merged.returncode == EXIT_NOT_READY, merged.stdout + merged.stderr  # one host FAILs
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["verdict"] == "FAIL"
    verdicts = {host["label"]: host["verdict"] for host in fleet["hosts"]}
    assert verdicts == {"synthetic-intel-iommu-on": "PASS", "vm": "FAIL"}, verdicts
    html = (out / "fleet.html").read_text()
    assert "synthetic-intel-iommu-on" in html and 'id="verdict-word">FAIL<' in html


def test_merge_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"format": "something else"}')
    result = subprocess.run([BIN / "hostdev-harness", "merge", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE and "not a hostdev-harness-report" in result.stderr, result.stderr


def test_tmt_metadata_is_well_formed() -> None:
    """The fmf tree tmt reads: plans and tests with the keys tmt needs (tmt itself: see the README)."""
    assert (REPO / ".fmf" / "version").read_text().strip() == "1"
    plans = yaml.safe_load((REPO / "plans" / "fleet.fmf").read_text())
    for name in ("/nightly", "/self-check"):
        assert {"discover", "provision", "execute", "report"} <= set(plans[name]), name
    tests = yaml.safe_load((REPO / "fleet" / "main.fmf").read_text())
    for name in ("/validate", "/validate-snapshot"):
        script = tests[name]["test"].split()[0]
        assert (REPO / "fleet" / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_tmt_accepts_the_fleet_metadata() -> None:
    """tmt's own linter on the plans and tests (tmt comes with the `fleet` extra, which `make venv` installs)."""
    tmt = BIN / "tmt"
    assert tmt.exists(), f"no {tmt}: pip install -e '.[fleet]' (make venv does)"
    linted = subprocess.run([tmt, "lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert linted.returncode == 0, linted.stdout[-3000:] + linted.stderr[-2000:]
    for name in (
        "/plans/fleet/nightly",
        "/plans/fleet/self-check",
        "/fleet/validate",
        "/fleet/validate-snapshot",
    ):
        assert name in linted.stdout, f"tmt lint did not see {name}"
