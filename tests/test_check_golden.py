"""What a person reads: every check's full output (verdict, summary, evidence, hint) on every committed
snapshot and on every branch case, compared with golden files. A changed word fails here; when the change
is meant, regenerate with ``HARNESS_UPDATE_GOLDEN=1 pytest tests/test_check_golden.py`` and review the diff."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checks.preparation import CheckPlan, run_all, run_check
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES, write_host
from tests.test_check_branches import CASES, HEALTHY

GOLDEN = Path(__file__).resolve().parent / "golden"
SNAPSHOTS = sorted(path.parent for path in FIXTURES.glob("*/expected.json"))


def _compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HARNESS_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    expected = path.read_text() if path.exists() else ""
    assert text == expected, (
        f"check output differs from {path} (regenerate with HARNESS_UPDATE_GOLDEN=1 if meant):\n"
        + "\n".join(
            f"- {a}\n+ {b}" for a, b in zip(expected.splitlines(), text.splitlines(), strict=False) if a != b
        )[:3000]
    )


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_check_output_of_each_snapshot(snapshot: Path) -> None:
    results = run_all(open_host(snapshot), CheckPlan(planned_devices=2, guest_memory_mib=2048))
    _compare(f"checks/{snapshot.name}.txt", "\n".join(result.explain() for result in results) + "\n")


def test_check_output_of_each_branch(tmp_path: Path) -> None:
    lines = []
    for index, (check, changes, *_rest) in enumerate(CASES):
        write_host(replace(HEALTHY, name="t", **changes), tmp_path / str(index))
        lines.append(f"## {index} {check} {sorted(changes)}")
        lines.append(run_check(check, open_host(tmp_path / str(index))).explain())
    _compare("checks/branches.txt", "\n".join(lines) + "\n")
