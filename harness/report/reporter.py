"""The end-of-run reports: host properties in JUnit, the summary in the terminal and in summary.txt."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _pytest.junitxml import xml_key

from harness.report.properties import CHECK, DEVICE, HOST_PREFIX, as_dict
from harness.report.summary import render_summary


def host_properties() -> dict[str, str]:
    """Properties of the machine the run reports from (the controller under xdist)."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    return {
        "hostname": socket.gethostname(),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cmdline": read("/proc/cmdline"),
    }


def report_dir(config: pytest.Config) -> Path:
    """The one folder every report of a run goes to: ``--harness-report-dir``, else ``<rootdir>/reports``."""
    chosen = config.getoption("harness_report_dir", None)
    return Path(chosen).absolute() if chosen else config.rootpath / "reports"


class HarnessReporter:
    """Collects verdicts from test reports (which carry user_properties across xdist) and reports them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.checks: list[dict[str, str]] = []
        self.devices: list[dict[str, str]] = []
        self.host: dict[str, str] = {}
        self.summary: str | None = None
        # What recovery undid for owners that were gone (an interrupted earlier run, a crashed worker).
        self.restored: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        properties = as_dict(report.user_properties)
        if CHECK in properties:
            self.checks.append(properties)
        if DEVICE in properties and "harness.assignable" in properties:
            self.devices.append(properties)
        self.host.update(
            {
                name[len(HOST_PREFIX) :]: value
                for name, value in properties.items()
                if name.startswith(HOST_PREFIX)
            }
        )

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not (self.checks or self.devices):
            return
        properties = {**host_properties(), **self.host}
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            for name, value in properties.items():
                xml.add_global_property(name, value)
        self.summary = render_summary(properties, self.checks, self.devices)
        folder = report_dir(self.config)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.txt").write_text(self.summary)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line in self.restored:
            terminalreporter.write_line(f"hostdev-harness restored after an interrupted run: {line}")
        if self.summary:
            terminalreporter.write_sep("=", "hostdev-harness summary")
            terminalreporter.write(self.summary)
