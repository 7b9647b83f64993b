"""The end-of-run reports, all in one folder (``--harness-report-dir``, default ``<rootdir>/reports``).

- ``summary.txt`` (and the end of the terminal output): ``Checking ...: PASS`` lines and a device table;
- ``report.json``: the run as versioned data (``harness/report/run_report.py``);
- ``report.html``: the certification report a person reads, rendered from report.json;
- ``junit.xml`` (pytest's, written where ``--junitxml`` says; the suites default it to this folder):
  host properties and the overall verdict on the suite, a ``<system-out>`` line on each WARN;
- ``junit-jenkins.xml``: the same, valid against Jenkins' junit-10.xsd.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Protocol

import pytest

from harness.checks.preparation import PREPARATION_CHECKS
from harness.report.html import render_html
from harness.report.junit import JENKINS_JUNIT, mark_warnings, write_jenkins_junit
from harness.report.model import host_block
from harness.report.properties import CHECK, DEVICE, HOST_PREFIX, as_dict
from harness.report.run_report import TestRecord, build_report
from harness.report.summary import render_summary


class _SuiteProperties(Protocol):
    """pytest's JUnit writer, as far as the reporter uses it: properties on the test suite."""

    def add_global_property(self, name: str, value: object) -> None: ...


def _junit_writer(config: pytest.Config) -> _SuiteProperties | None:
    """The JUnit writer pytest's junitxml plugin registered for ``--junitxml`` (None without one), found
    through the public plugin manager rather than junitxml's private stash key."""
    if not config.option.xmlpath:
        return None
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)) and not isinstance(plugin, type):
            return plugin  # type: ignore[no-any-return]
    return None


def _collected_harness_tests(session: pytest.Session) -> bool:
    """Whether this run collected tests of the harness's suites (they use its fixtures), not any pytest run."""
    return any(
        name.startswith("harness_") for item in session.items for name in getattr(item, "fixturenames", ())
    )


class HarnessReporter:
    """Collects verdicts from test reports (which carry user_properties across xdist) and reports them."""

    def __init__(self, config: pytest.Config, folder: Path, snapshot: str | None) -> None:
        self.config = config
        self.folder = folder
        self.snapshot = snapshot
        self.records: dict[str, TestRecord] = {}
        self.host: dict[str, str] = {}
        self.summary: str | None = None
        # What recovery undid for owners that were gone (an interrupted earlier run, a crashed worker).
        self.restored: list[str] = []
        self.written: list[Path] = []
        self.junit_path: Path | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.records.setdefault(report.nodeid, TestRecord(report.nodeid))
        record.path = record.path or str((self.config.rootpath / report.location[0]).resolve())
        record.add(report)
        if report.when != "call":
            return
        properties = as_dict(report.user_properties)
        self.host.update(
            {
                name[len(HOST_PREFIX) :]: value
                for name, value in properties.items()
                if name.startswith(HOST_PREFIX)
            }
        )

    def _has_verdicts(self) -> bool:
        return any(
            name in (CHECK, DEVICE) for record in self.records.values() for name, _ in record.properties
        )

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        # An interrupted run of the harness's suites reports INTERRUPTED even before its first verdict: a
        # report of an earlier run left in the folder must not stand for this one.
        if not self._has_verdicts() and not (interrupted and _collected_harness_tests(session)):
            return
        snapshot = self.snapshot
        # After the harness's own, what other plugins add (the lab's, inside a nested host).
        extra = [
            found for found in self.config.hook.pytest_harness_host_properties(config=self.config) if found
        ]
        host = host_block(snapshot, *extra, self.host)
        command = ["pytest", *sys.argv[1:]] if "pytest" in Path(sys.argv[0]).name else list(sys.argv)
        records = list(self.records.values())
        report = build_report(
            records,
            host,
            command,
            snapshot,
            expected_checks=list(PREPARATION_CHECKS),
            interrupted=interrupted,
        )
        report["restored"] = list(self.restored)
        xml = _junit_writer(self.config)
        if xml is not None:
            for name, value in host.items():
                xml.add_global_property(name, value)
            xml.add_global_property("harness.verdict", report["verdict"])
            xml.add_global_property("harness.verdict_reason", report["verdict_reason"])
            warnings = sum(1 for check in report["checks"] if check["verdict"] == "WARN")
            xml.add_global_property("harness.warnings", str(warnings))
            self.junit_path = Path(self.config.option.xmlpath).absolute()
        self.summary = render_summary(report)
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("summary.txt", self.summary),
            ("report.json", json.dumps(report, indent=2) + "\n"),
            ("report.html", render_html(report)),
        ):
            (folder / name).write_text(text)
            self.written.append(folder / name)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line in self.restored:
            terminalreporter.write_line(f"hostdev-harness restored after an interrupted run: {line}")
        if self.summary:
            terminalreporter.write_sep("=", "hostdev-harness summary")
            terminalreporter.write(self.summary)
            reports = [*self.written, *([self.folder / JENKINS_JUNIT] if self.junit_path else [])]
            terminalreporter.write_line("reports: " + " ".join(str(path) for path in reports))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """After junitxml wrote its file: the WARN lines, and the copy for Jenkins' schema."""
        if self.junit_path is None or not self.junit_path.exists():
            return
        mark_warnings(self.junit_path)
        write_jenkins_junit(self.junit_path, self.folder / JENKINS_JUNIT)
