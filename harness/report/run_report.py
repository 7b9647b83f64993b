"""The run as data: one JSON document (``report.json``, schema ``report-v1.schema.json``) behind every report.

The document is versioned (``format`` and ``version``); a consumer checks both. Version 1 holds the
readiness verdict and why, the host and environment, each check with evidence and hint, the device
matrix, and every test with outcome, duration, ``harness.*`` properties and reproducer commands.
The HTML report is rendered from this document alone.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pytest

from harness import __version__
from harness.report.model import check_entry, device_entry, merged, one
from harness.report.properties import CHECK

REPORT_FORMAT = "hostdev-harness-report"
REPORT_VERSION = 1
SCHEMA_RESOURCE = "report-v1.schema.json"
# ``check --json``: its host block and check verdicts refer to this schema's.
CHECK_SCHEMA_RESOURCE = "check-v1.schema.json"
_REPRODUCE = re.compile(r"reproduce: ([^\n]+?)(?:;|$)", re.MULTILINE)


def report_schema(resource: str = SCHEMA_RESOURCE) -> dict[str, Any]:
    """The JSON schema of ``report.json`` version 1 (or of ``check --json``: ``CHECK_SCHEMA_RESOURCE``),
    shipped inside the package."""
    text = resources.files("harness.report").joinpath(resource).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass
class TestRecord:
    """One test across its phases: the worst outcome, the summed duration, its properties and message."""

    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    properties: list[tuple[str, str]] = field(default_factory=list)
    message: str | None = None
    # The test's file as an absolute path: its nodeid is relative to a rootdir the suites may lie outside of.
    path: str | None = None

    def add(self, report: pytest.TestReport) -> None:
        self.duration_s += report.duration
        self.properties = [(str(n), str(v)) for n, v in report.user_properties] or self.properties
        if report.failed:
            self.outcome = "failed" if report.when == "call" else "error"
            self.message = report.longreprtext
        elif report.skipped and self.outcome == "passed":
            self.outcome = "skipped"
            longrepr = report.longrepr
            self.message = str(longrepr[2]) if isinstance(longrepr, tuple) else report.longreprtext


def _check(record: TestRecord) -> dict[str, Any]:
    entry = check_entry(merged(record.properties), failed=record.outcome != "passed")
    return {**entry, "name": entry["name"] or record.nodeid, "nodeid": record.nodeid}


def _device(record: TestRecord) -> dict[str, Any]:
    return {
        **device_entry(merged(record.properties)),
        "libvirt_view": {"passed": "agrees", "skipped": "not compared"}.get(record.outcome, "differs"),
        "nodeid": record.nodeid,
    }


def _reproducers(record: TestRecord, base_command: Sequence[str]) -> list[str]:
    if record.outcome not in ("failed", "error"):
        return []
    options: list[str] = []
    words = list(base_command)
    for index, word in enumerate(words):
        if not word.startswith("--harness-") or word.startswith("--harness-report-dir"):
            continue
        options.append(word)
        takes_value = "=" not in word and word != "--harness-strict"
        if takes_value and index + 1 < len(words):
            options.append(words[index + 1])
    _, separator, name = record.nodeid.partition("::")
    target = f"{record.path}{separator}{name}" if record.path else record.nodeid
    commands = [shlex.join(["pytest", target, *options])]
    commands += [match.strip() for match in _REPRODUCE.findall(record.message or "")]
    return list(dict.fromkeys(commands))


def _verdict(
    checks: Sequence[Mapping[str, Any]],
    tests: Sequence[Mapping[str, Any]],
    not_run: Sequence[str] = (),
    interrupted: bool = False,
) -> tuple[str, str]:
    """FAIL > INTERRUPTED > INCOMPLETE > WARN > PASS: a run that did not check everything never says PASS."""
    failed_checks = [c["name"] for c in checks if c["verdict"] == "FAIL"]
    failed_tests = [t["nodeid"] for t in tests if t["outcome"] in ("failed", "error")]
    warned = [c["name"] for c in checks if c["verdict"] == "WARN"]
    if failed_checks or failed_tests:
        parts = []
        if failed_checks:
            parts.append(f"{len(failed_checks)} check(s) FAIL: {', '.join(failed_checks)}")
        other = [t for t in failed_tests if t not in {c["nodeid"] for c in checks}]
        if other:
            parts.append(f"{len(other)} other test(s) failed")
        return "FAIL", "; ".join(parts)
    missing = f"{len(not_run)} preparation check(s) did not run: {', '.join(not_run)}" if not_run else ""
    if interrupted:
        return "INTERRUPTED", "the run was interrupted" + (f"; {missing}" if missing else "")
    if not_run:
        return "INCOMPLETE", missing
    if warned:
        return "WARN", f"{len(warned)} check(s) WARN: {', '.join(warned)}"
    if not tests:
        return "FAIL", "no tests ran"
    return "PASS", "every check passed and every test that ran passed"


def build_report(
    records: Sequence[TestRecord],
    host: Mapping[str, str],
    command: Sequence[str],
    snapshot: str | None,
    *,
    expected_checks: Sequence[str] = (),
    interrupted: bool = False,
) -> dict[str, Any]:
    """``expected_checks``: the checks a complete run has (any of them missing makes it INCOMPLETE)."""
    checks = [_check(r) for r in records if any(name == CHECK for name, _ in r.properties)]
    ran = {c["name"] for c in checks}
    not_run = [name for name in expected_checks if name not in ran]
    devices = [_device(r) for r in records if any(name == "harness.assignable" for name, _ in r.properties)]
    tests = [
        {
            "nodeid": r.nodeid,
            "outcome": r.outcome,
            "duration_s": round(r.duration_s, 3),
            "verdict": one(merged(r.properties), "harness.verdict"),
            "properties": {name: "\n".join(values) for name, values in merged(r.properties).items()},
            "message": r.message,
            "reproduce": _reproducers(r, command),
        }
        for r in records
    ]
    verdict, reason = _verdict(checks, tests, not_run, interrupted)
    counts = {
        outcome: sum(t["outcome"] == outcome for t in tests)
        for outcome in ("passed", "failed", "skipped", "error")
    }
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "run_id": uuid.uuid4().hex,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "verdict": verdict,
        "verdict_reason": reason,
        "host": dict(host),
        "environment": {
            "harness": __version__,
            "python": platform.python_version(),
            "pytest": pytest.__version__,
            "command": list(command),
            "snapshot": snapshot,
        },
        "counts": counts,
        "checks": checks,
        "devices": sorted(devices, key=lambda d: d["address"]),
        "tests": tests,
        "not_run": not_run,
    }
