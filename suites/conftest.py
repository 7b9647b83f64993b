"""The suites write their JUnit report to reports/junit.xml unless told otherwise; fixtures they share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from suites.steps import RecordProperty, StepLog


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.option.xmlpath is None and not hasattr(config, "workerinput"):
        report_dir = Path(config.getoption("harness_report_dir") or config.rootpath / "reports")
        config.option.xmlpath = str(report_dir / "junit.xml")


@pytest.fixture
def log(record_property: RecordProperty) -> Iterator[StepLog]:
    """The test's steps, each with its virsh command and time; published as JUnit properties at the end."""
    steps = StepLog(record_property)
    yield steps
    steps.publish()
