"""The reports of one suites run, each checked by the consumer it is for.

report.json against its shipped JSON schema; junit-jenkins.xml against Jenkins' junit-10.xsd and both
JUnit files through junitparser; report.html rendered by headless Chromium (Debian's ``chromium``,
installed by ``make deps``): the verdict must be in the DOM and in the screenshot's pixels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import JUnitXml, TestCase, TestSuite
from lxml import etree
from PIL import Image

from harness.checks.preparation import PREPARATION_CHECKS
from harness.errors import EXIT_INCOMPLETE
from harness.report.junit import JENKINS_JUNIT
from harness.report.run_report import REPORT_VERSION, report_schema
from tests.synthetic_hosts import FIXTURES

REPO = Path(__file__).resolve().parent.parent
JUNIT_XSD = REPO / "fixtures" / "junit" / "junit-10.xsd"
WARN_HOST = FIXTURES / "synthetic-unsafe-interrupts"
WARN_CASE = "test_preparation[interrupt_remapping]"
WARN_COLOUR = (0xB2, 0x6A, 0x00)  # .WARN in harness/report/html.py


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the suites on a host that WARNs, reports in their own folder (junit.xml by default too)."""
    folder = tmp_path_factory.mktemp("reports")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--harness-allow=0000:01:00.0"]
    argv += [f"suites/{name}.py" for name in ("test_preparation", "test_inventory", "test_assignment")]
    argv += [f"--harness-snapshot={WARN_HOST}", f"--harness-report-dir={folder}"]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return folder


def test_every_report_lands_in_the_one_folder(reports: Path) -> None:
    found = sorted(path.name for path in reports.iterdir())
    assert found == sorted(["junit.xml", JENKINS_JUNIT, "report.html", "report.json", "summary.txt"]), found


def test_json_report_follows_its_schema(reports: Path) -> None:
    report = json.loads((reports / "report.json").read_text())
    validator = jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker())
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(report)]
    assert not errors, f"report.json breaks harness/report/report-v1.schema.json: {errors[:5]}"
    assert report["version"] == REPORT_VERSION and report["verdict"] == "WARN", report["verdict_reason"]
    remapping = next(c for c in report["checks"] if c["name"] == "interrupt_remapping")
    assert remapping["verdict"] == "WARN" and remapping["hint"] and remapping["evidence"]
    assert {d["address"] for d in report["devices"]} >= {"0000:01:00.0", "0000:00:1f.6"}


def test_the_schema_rejects_what_it_should() -> None:
    validator = jsonschema.Draft202012Validator(report_schema())
    assert not validator.is_valid({"format": "hostdev-harness-report", "version": 1})
    assert not validator.is_valid({"format": "something else", "version": 1})


def test_jenkins_junit_validates_against_junit_10_xsd(reports: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    document = etree.parse(str(reports / JENKINS_JUNIT))
    assert schema.validate(document), f"{JENKINS_JUNIT} breaks junit-10.xsd: {str(schema.error_log)[:600]}"


def test_a_warn_cannot_hide_in_junit(reports: Path) -> None:
    """junitparser, a real consumer: the WARN is in the testcase's system-out and on the suite."""
    for name in ("junit.xml", JENKINS_JUNIT):
        xml = JUnitXml.fromfile(str(reports / name))
        suites = [s for s in xml if isinstance(s, TestSuite)] if isinstance(xml, JUnitXml) else [xml]
        cases = {case.name: case for suite in suites for case in suite if isinstance(case, TestCase)}
        assert "hostdev-harness WARN" in (cases[WARN_CASE].system_out or ""), f"{name}: no WARN line"
        suite_properties = {p.name: p.value for suite in suites for p in suite.properties()}  # type: ignore[no-untyped-call]
        assert suite_properties["harness.verdict"] == "WARN", f"{name}: {suite_properties}"
        assert suite_properties["harness.warnings"] == "1"
    # junit.xml keeps per-testcase properties for the tools (and tests) that read them.
    junit = etree.parse(str(reports / "junit.xml"))
    case = next(c for c in junit.iter("testcase") if c.get("name") == WARN_CASE)
    assert {p.get("name"): p.get("value") for p in case.iter("property")}["harness.verdict"] == "WARN"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.fail("chromium is not installed: run `make deps` (Debian package chromium)", pytrace=False)


def test_html_report_renders_in_headless_chromium(reports: Path, tmp_path: Path) -> None:
    browser = _chromium()
    page = (reports / "report.html").as_uri()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert 'id="verdict-word">WARN<' in dom.stdout, f"verdict not in the rendered DOM: {dom.stderr[-1000:]}"
    for section in ("checks", "devices", "scenarios", "reproduce", "environment"):
        assert f'id="{section}"' in dom.stdout, f"section {section} missing"
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*common, "--hide-scrollbars", "--window-size=1280,900", f"--screenshot={screenshot}", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert screenshot.exists(), f"no screenshot: {shot.stderr[-1000:]}"
    shutil.copy(screenshot, reports / "report.png")  # kept beside the report for a person to look at
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, f"the screenshot looks blank ({len(colours)} colours): {screenshot}"
    banner = image.crop((0, 0, image.width, image.height // 4))
    warn_pixels = sum(
        count for count, colour in banner.getcolors(maxcolors=1 << 20) or [] if colour == WARN_COLOUR
    )
    assert warn_pixels > 10_000, (
        f"the WARN banner is not visible at the top of {screenshot} ({warn_pixels} px)"
    )


PARTIAL_HOST = FIXTURES / "synthetic-grub-misspelled"


def _valid_reports(folder: Path) -> dict[str, Any]:
    """report.json against its schema, both JUnit files parse, junit-jenkins.xml against junit-10.xsd."""
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    validator = jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker())
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(report)]
    assert not errors, f"{folder}/report.json breaks report-v1.schema.json: {errors[:5]}"
    JUnitXml.fromfile(str(folder / "junit.xml"))
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    document = etree.parse(str(folder / JENKINS_JUNIT))
    assert schema.validate(document), f"{folder}/{JENKINS_JUNIT} breaks junit-10.xsd: {schema.error_log}"
    return report


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``hostdev-harness validate --snapshot ... --suite inventory``: no preparation check runs."""
    folder = tmp_path_factory.mktemp("partial")
    cli = Path(sys.executable).parent / "hostdev-harness"
    argv = [
        str(cli),
        "validate",
        f"--snapshot={PARTIAL_HOST}",
        "--suite",
        "inventory",
        f"--report-dir={folder}",
    ]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    return folder, result


def test_a_run_without_every_preparation_check_is_incomplete_never_pass(
    partial: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, result = partial
    assert result.returncode == EXIT_INCOMPLETE, (
        f"expected exit {EXIT_INCOMPLETE} (INCOMPLETE), found {result.returncode}: {result.stdout[-2000:]}"
    )
    report = _valid_reports(folder)
    assert report["verdict"] == "INCOMPLETE", report["verdict_reason"]
    assert report["not_run"] == list(PREPARATION_CHECKS), report["not_run"]
    assert report["run_id"] and f"Run {report['run_id']}" in (folder / "summary.txt").read_text()
    for name in PREPARATION_CHECKS:
        assert name in str(report["verdict_reason"]), f"{name} not named in {report['verdict_reason']!r}"
    summary = (folder / "summary.txt").read_text()
    assert "Overall verdict: INCOMPLETE" in summary and "Overall verdict: INCOMPLETE" in result.stdout, (
        summary
    )


def test_the_host_block_names_the_host_under_test(
    partial: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, result = partial
    report = json.loads((folder / "report.json").read_text())
    expected = {
        "hostname": (PARTIAL_HOST / "proc/sys/kernel/hostname").read_text().strip(),
        "kernel": (PARTIAL_HOST / "proc/sys/kernel/osrelease").read_text().strip(),
        "cmdline": (PARTIAL_HOST / "proc/cmdline").read_text().strip(),
    }
    found = {name: report["host"].get(name) for name in expected}
    assert found == expected, f"host block: expected the snapshot's {expected}, found {found}"
    # What the snapshot lacks is said, never filled in from the machine pytest runs on.
    for name in ("os", "cpu", "system_vendor", "system_model", "bios"):
        assert report["host"].get(name) == "not captured", f"host {name}: found {report['host'].get(name)!r}"
    manifest = json.loads((PARTIAL_HOST / ".harness/manifest.json").read_text())
    banner = f"captured {manifest['captured_at']} by {manifest['captured_by']}"
    for where, text in (("summary.txt", (folder / "summary.txt").read_text()), ("terminal", result.stdout)):
        assert "SNAPSHOT" in text and banner in text, f"no snapshot banner ({banner!r}) in {where}: {text}"
    assert banner in (folder / "report.html").read_text()


def test_incomplete_html_shows_the_snapshot_banner_and_what_did_not_run(
    partial: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, _ = partial
    browser = _chromium()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    page = (folder / "report.html").as_uri()
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert 'id="verdict-word">INCOMPLETE<' in dom, f"expected INCOMPLETE in the rendered DOM of {page}"
    assert 'id="snapshot-banner"' in dom and 'id="not-run"' in dom, f"banner or not-run missing in {page}"
    assert all(name in dom for name in PREPARATION_CHECKS)
    assert 'id="counts">0 checks;' in dom and "6 devices: " in dom, f"counts missing in {page}"
    # The inventory's one skip, with its reason, in the page without a click.
    assert 'id="skipped-by-reason"' in dom and "(1):" in dom, f"skipped-by-reason missing in {page}"


_INTERRUPTER = """
import pytest

WHERE = {where!r}


def pytest_collection_modifyitems(items):
    if WHERE == "collection":
        raise KeyboardInterrupt


def pytest_runtest_setup(item):
    if WHERE == "first":
        raise KeyboardInterrupt
    if item.name.endswith("[iommu_kernel]") and WHERE == "setup":
        raise KeyboardInterrupt
    if item.name.endswith("[iommu_kernel]") and WHERE == "exit":
        pytest.exit("stopped by the test")


def pytest_runtest_call(item):
    if item.name.endswith("[iommu_kernel]") and WHERE == "call":
        raise KeyboardInterrupt
"""


@pytest.mark.parametrize("where", ["first", "setup", "call", "exit", "collection"])
def test_an_interrupted_run_is_never_pass_and_its_reports_validate(where: str, tmp_path: Path) -> None:
    (tmp_path / "harness_interrupter.py").write_text(_INTERRUPTER.format(where=where))
    folder = tmp_path / "reports"
    # An earlier run's green report in the same folder: it must not stand for this run.
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"verdict": "PASS", "stale": True}))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
    argv += ["-p", "harness_interrupter", "suites/test_preparation.py", "suites/test_inventory.py"]
    argv += [f"--harness-snapshot={WARN_HOST}", f"--harness-report-dir={folder}"]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == pytest.ExitCode.INTERRUPTED, (
        f"expected pytest exit 2 (interrupted {where}), found {result.returncode}: {result.stdout[-2000:]}"
    )
    if where == "collection":  # nothing ran: no verdicts, so no report may claim anything
        assert not (folder / "report.json").exists() or "PASS" not in (folder / "report.json").read_text()
        return
    report = _valid_reports(folder)
    assert "stale" not in report, (
        f"interrupted in {where}: the earlier run's report.json was left as this run's"
    )
    assert report["verdict"] == "INTERRUPTED", f"interrupted in {where}: found {report['verdict']}"
    assert "iommu_kernel" in report["not_run"], report["not_run"]


def test_every_reproduce_line_runs_as_printed_from_where_the_user_ran(tmp_path: Path) -> None:
    """validate run from a directory that is not the checkout: each printed line, run by a shell there,
    selects and runs exactly its test."""
    cli = Path(sys.executable).parent / "hostdev-harness"
    folder = tmp_path / "r"
    argv = [
        str(cli),
        "validate",
        f"--snapshot={PARTIAL_HOST}",
        "--suite",
        "preparation",
        f"--report-dir={folder}",
    ]
    subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    report = json.loads((folder / "report.json").read_text())
    failing = [t for t in report["tests"] if t["reproduce"]]
    assert failing, f"expected a failing check with a reproduce line in {folder}/report.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for test in failing:
        line = test["reproduce"][0]
        ran = subprocess.run(
            line, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
        )
        name = test["nodeid"].partition("::")[2]
        assert "1 failed" in ran.stdout and " passed" not in ran.stdout and name in ran.stdout, (
            f"{line!r} from {tmp_path}: expected exactly {name} to run (and fail), found: {ran.stdout[-1500:]}"
        )


def test_check_and_summary_end_with_the_overall_verdict_and_counts(
    partial: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cli = Path(sys.executable).parent / "hostdev-harness"
    result = subprocess.run(
        [str(cli), "check", f"--snapshot={PARTIAL_HOST}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = result.stdout.rstrip().splitlines()[-1]
    assert last == "Overall verdict: FAIL (8 checks: 7 PASS, 1 FAIL)", f"last line of check: found {last!r}"
    folder, _ = partial
    final = (folder / "summary.txt").read_text().rstrip().splitlines()[-1]
    assert final.startswith("Overall verdict: INCOMPLETE") and "0 checks; 6 devices: " in final, final


def test_check_json_is_an_object_with_host_and_verdict_and_json_list_keeps_the_list() -> None:
    cli = Path(sys.executable).parent / "hostdev-harness"
    outputs = {}
    for flag in ("--json", "--json-list"):
        run = subprocess.run(
            [str(cli), "check", flag, f"--snapshot={PARTIAL_HOST}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 1, (
            f"check {flag}: expected exit 1 (a FAIL), found {run.returncode}: {run.stderr}"
        )
        outputs[flag] = json.loads(run.stdout)
    document = outputs["--json"]
    assert document["format"] == "hostdev-harness-check" and document["version"] == 1, document
    assert document["host"]["hostname"] == "synthetic-grub-misspelled" and document["verdict"] == "FAIL"
    assert document["checks"] == outputs["--json-list"], "--json's checks differ from --json-list"
    assert [c["name"] for c in outputs["--json-list"]] == list(PREPARATION_CHECKS)


def test_the_lab_plugin_adds_its_host_properties_through_the_harness_hook(tmp_path: Path) -> None:
    """Inside L1 the lab names ``harness.lab.report_properties`` in PYTEST_PLUGINS: its properties reach
    report.json and junit.xml through ``pytest_harness_host_properties``, and the reporter imports no lab."""
    from harness.lab.paths import LAB_QEMU_ENV

    qemu = "QEMU 10.0.13 (fetched): the machine's QEMU 7.2.22 has no igb"
    env = {**os.environ, "PYTEST_PLUGINS": "harness.lab.report_properties", LAB_QEMU_ENV: qemu}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "suites/test_preparation.py"]
    argv += [f"--harness-snapshot={WARN_HOST}", f"--harness-report-dir={tmp_path}"]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert json.loads((tmp_path / "report.json").read_text())["host"]["lab_l1_qemu"] == qemu
    junit = etree.parse(str(tmp_path / "junit.xml")).getroot()
    found = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert found.get("lab_l1_qemu") == qemu, found


def test_check_and_inventory_json_agree_with_the_suites_report_json(reports: Path) -> None:
    """The suites' report.json and ``check --json`` / ``inventory --json`` on the same snapshot: one host
    block, the same check verdicts, the same devices (tests/test_report_model.py does it on every snapshot)."""
    report = json.loads((reports / "report.json").read_text())
    cli = Path(sys.executable).parent / "hostdev-harness"
    outputs = {}
    for command in ("check", "inventory"):
        run = subprocess.run(
            [str(cli), command, "--json", f"--snapshot={WARN_HOST}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{command} --json: exit {run.returncode}: {run.stderr}"
        outputs[command] = json.loads(run.stdout)
    check = outputs["check"]
    assert check["host"] == report["host"], f"check --json host {check['host']}, report.json {report['host']}"
    verdicts = {c["name"]: c["verdict"] for c in report["checks"]}
    assert {c["name"]: c["verdict"] for c in check["checks"]} == verdicts
    devices = {d["address"]: (d["nodedev"], d["iommu_group"], d["assignable"]) for d in report["devices"]}
    found = {
        row["address"]: (row["nodedev"], row["iommu_group"], row["assignable"])
        for row in outputs["inventory"]
    }
    assert found == devices
