"""``hostdev-harness validate``: the shipped suites run by pytest, with pytest's outcome as our exit code."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.command import EXIT_INTERRUPTED
from harness.errors import EXIT_INTERNAL, EXIT_NOT_READY, EXIT_READY, EXIT_USAGE, HarnessEnvironmentError

SUITES_PACKAGE = "hostdev_harness_suites"  # the wheel's name for the checkout's suites/ folder
_EXIT_CODES = {
    pytest.ExitCode.OK: EXIT_READY,
    pytest.ExitCode.TESTS_FAILED: EXIT_NOT_READY,
    pytest.ExitCode.INTERRUPTED: EXIT_INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR: EXIT_INTERNAL,
    pytest.ExitCode.USAGE_ERROR: EXIT_USAGE,
    pytest.ExitCode.NO_TESTS_COLLECTED: EXIT_USAGE,
}


def suites_dir() -> Path:
    """The suites this harness ships: the installed package, else the checkout's suites/ folder."""
    spec = importlib.util.find_spec(SUITES_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parent.parent / "suites"
    if checkout.is_dir():
        return checkout
    raise HarnessEnvironmentError(
        f"the suites are not installed ({SUITES_PACKAGE}); reinstall hostdev-harness"
    )


def run_suites(
    snapshot: str | None, uri: str, report_dir: str | None, pytest_args: Sequence[str] = ()
) -> int:
    """Run every shipped suite; reports go to ``report_dir`` (default ``./reports``), never into the package."""
    reports = Path(report_dir or "reports").absolute()
    args = [
        str(suites_dir()),
        f"--rootdir={Path.cwd()}",
        f"--harness-report-dir={reports}",
        f"--harness-uri={uri}",
        "-p",
        "no:cacheprovider",
        # Per-testcase properties need xunit1, which the checkout's pyproject.toml sets and a wheel lacks.
        "-o",
        "junit_family=xunit1",
        *([f"--harness-snapshot={snapshot}"] if snapshot else []),
        *pytest_args,
    ]
    code = pytest.main(args)
    return _EXIT_CODES.get(pytest.ExitCode(code), EXIT_INTERNAL)
