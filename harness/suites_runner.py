"""``hostdev-harness validate``: the shipped suites run by pytest, with pytest's outcome as our exit code."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.command import EXIT_INTERRUPTED
from harness.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_NOT_READY,
    EXIT_READY,
    EXIT_USAGE,
    HarnessEnvironmentError,
    HarnessInputError,
)

SUITES_PACKAGE = "hostdev_harness_suites"  # the wheel's name for the checkout's suites/ folder
_EXIT_CODES: dict[int, int] = {
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


def suite_names(folder: Path) -> list[str]:
    """The shipped suites by short name: ``test_preparation.py`` is ``preparation``."""
    return sorted(path.stem.removeprefix("test_") for path in folder.glob("test_*.py"))


def suite_paths(names: Sequence[str]) -> list[Path]:
    """The suite files for ``names`` (all of them when empty); an unknown name is a usage error."""
    folder = suites_dir()
    if not names:
        return [folder]
    known = suite_names(folder)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise HarnessInputError(
            f"no shipped suite named {', '.join(map(repr, unknown))}; the suites are {', '.join(known)}"
        )
    return [folder / f"test_{name}.py" for name in names]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# validate sets these itself from its own options; a second value after ``--`` would be a second answer.
_OWN_OPTIONS = {
    "--harness-report-dir": "--report-dir",
    "--harness-uri": "--uri",
    "--harness-snapshot": "--snapshot",
    "--rootdir": None,
}


def _refuse_own_options(pytest_args: Sequence[str]) -> None:
    for arg in pytest_args:
        name = arg.split("=", 1)[0]
        if name in _OWN_OPTIONS:
            instead = _OWN_OPTIONS[name]
            fix = f"use validate's {instead}" if instead else "run validate from the directory you want"
            raise HarnessInputError(f"{name} after -- is set by validate itself: {fix}, once")


def run_suites(
    snapshot: str | None,
    uri: str,
    report_dir: str | None,
    pytest_args: Sequence[str] = (),
    suites: Sequence[str] = (),
) -> int:
    """Run the shipped suites (every one, or those named in ``suites``, e.g. ``preparation``); reports go
    to ``report_dir`` (default ``./reports``), never into the package.

    pytest runs in a process of its own: in this one the harness is imported already, too late for
    pytest's assertion rewriting.
    """
    _refuse_own_options(pytest_args)
    reports = Path(report_dir or "reports").absolute()
    args = [
        sys.executable,
        "-m",
        "pytest",
        *map(str, suite_paths(suites)),
        f"--rootdir={Path.cwd()}",
        f"--harness-report-dir={reports}",
        f"--harness-uri={uri}",
        "-p",
        "no:cacheprovider",
        # Per-testcase properties need xunit1, which the checkout's pyproject.toml sets and a wheel lacks.
        "-o",
        "junit_family=xunit1",
        *([f"--harness-snapshot={snapshot}"] if snapshot else []),
        # Deterministic and without deadlines (a loaded host must not fail the XML suites), unless chosen.
        *(
            []
            if any(a.startswith("--hypothesis-profile") for a in pytest_args)
            else ["--hypothesis-profile=ci"]
        ),
        *pytest_args,
    ]
    # Ctrl-C reaches pytest as well (same process group): it stops, writes its reports and exits 2 (-> 130).
    before = _report_stamp(reports)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = subprocess.run(args, check=False, preexec_fn=_default_sigint).returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    if code < 0:  # pytest killed by a signal
        return EXIT_INTERRUPTED if -code == signal.SIGINT else EXIT_INTERNAL
    if code == pytest.ExitCode.OK and _report_stamp(reports) != before and _verdict(reports) == "INCOMPLETE":
        return EXIT_INCOMPLETE  # pytest passed what it ran, but not every preparation check ran
    return _EXIT_CODES.get(code, EXIT_INTERNAL)


def _report_stamp(reports: Path) -> int | None:
    try:
        return (reports / "report.json").stat().st_mtime_ns
    except OSError:
        return None


def _verdict(reports: Path) -> str | None:
    """The overall verdict of the report.json this run wrote, or None when it wrote none."""
    try:
        document = json.loads((reports / "report.json").read_text())
    except (OSError, ValueError):
        return None
    verdict = document.get("verdict") if isinstance(document, dict) else None
    return verdict if isinstance(verdict, str) else None
