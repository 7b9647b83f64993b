"""The suites write their JUnit report to reports/junit.xml unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.option.xmlpath is None and not hasattr(config, "workerinput"):
        report_dir = Path(config.getoption("harness_report_dir") or config.rootpath / "reports")
        config.option.xmlpath = str(report_dir / "junit.xml")
