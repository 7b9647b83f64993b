"""The suites need the harness plugin, write their JUnit report into the harness report folder, and run installed.

Installed from a wheel, this folder is the package ``hostdev_harness_suites``; the suites' own imports
name it ``suites`` (as in a checkout), so that name is made to point at the installed package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest

if __package__ and __package__ != "suites":  # installed: make ``from suites.steps import ...`` work
    sys.modules.setdefault("suites", importlib.import_module(__package__))

from suites.steps import RecordProperty, StepLog  # after the alias above

# The pytest11 entry point's name (pyproject.toml), or the module's when loaded with -p harness.plugin.
HARNESS_PLUGIN_NAMES = ("harness", "harness.plugin")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not any(config.pluginmanager.has_plugin(name) for name in HARNESS_PLUGIN_NAMES):
        raise pytest.UsageError(
            "hostdev-harness: the suites need the harness plugin, which -p no:harness turned off; run without it"
        )
    from harness.report.reporter import report_dir

    if config.option.xmlpath is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(report_dir(config) / "junit.xml")


@pytest.fixture
def log(record_property: RecordProperty) -> Iterator[StepLog]:
    """The test's steps, each with its virsh command and time; published as JUnit properties at the end."""
    steps = StepLog(record_property)
    yield steps
    steps.publish()
