"""next_boot never guesses and never asks to hand-edit a generated file.

A statement of /etc/default/grub the reader does not evaluate (a command, ``$(...)``, ``if``, ``.``) may change
the kernel command line: the check WARNs naming its file and line instead of a PASS. And no hint, on any
committed snapshot or branch case, asks to edit grub.cfg, which update-grub / grub(2)-mkconfig rewrite.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checks.preparation import CheckPlan, run_all, run_check
from harness.checks.result import Verdict
from harness.host.host import Host
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES, write_host
from tests.test_check_branches import CASES, HEALTHY

SNAPSHOTS = sorted(path.parent for path in FIXTURES.glob("*/expected.json"))
# "remove X from /boot/grub/grub.cfg", "append X to grub.cfg", "edit ... grub2.cfg": hand edits of a generated file
_EDIT_GENERATED = re.compile(
    r"\b(remove|append|add|edit|change|delete)\b[^;]*?\b(from|to|in)\s+\S*grub2?(-efi)?\.cfg\b"
)


def _hints(host: Host) -> list[str]:
    return [r.hint for r in run_all(host, CheckPlan(planned_devices=2, guest_memory_mib=2048)) if r.hint]


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_no_hint_asks_to_edit_grub_cfg_on_any_snapshot(snapshot: Path) -> None:
    for hint in _hints(open_host(snapshot)):
        assert not _EDIT_GENERATED.search(hint), (
            f"{snapshot.name}: a hint asks to edit a generated file: {hint}"
        )


def test_no_hint_asks_to_edit_grub_cfg_on_any_branch_case(tmp_path: Path) -> None:
    for index, (check, changes, *_rest) in enumerate(CASES):
        write_host(replace(HEALTHY, name="t", **changes), tmp_path / str(index))
        hint = run_check(check, open_host(tmp_path / str(index))).hint or ""
        assert not _EDIT_GENERATED.search(hint), f"case {index} {check} {sorted(changes)}: {hint}"


def test_the_pattern_catches_the_old_hint() -> None:
    assert _EDIT_GENERATED.search(
        "remove intel_iommu=off from /boot/grub/grub.cfg (line 1), then run update-grub"
    )
    assert not _EDIT_GENERATED.search(
        "run grub2-mkconfig -o /boot/grub2/grub.cfg (RHEL 9.3+: add --update-bls-cmdline)"
    )


BASE = "synthetic-intel-iommu-on"


def _with_defaults_line(tmp_path: Path, line: str) -> tuple[Host, int]:
    root = tmp_path / "host"
    shutil.copytree(FIXTURES / BASE, root, symlinks=True)
    defaults = root / "etc/default/grub"
    text = defaults.read_text()
    defaults.write_text(text.rstrip("\n") + "\n" + line + "\n")
    return open_host(root), text.rstrip("\n").count("\n") + 2


def test_the_base_snapshot_passes() -> None:
    result = run_check("next_boot", open_host(FIXTURES / BASE))
    assert result.verdict is Verdict.PASS, result.explain()


@pytest.mark.parametrize(
    "line",
    [
        'GRUB_CMDLINE_LINUX="$(cat /etc/args)"',
        "GRUB_CMDLINE_LINUX=`cat /etc/args`",
        'if [ -e /x ]; then GRUB_CMDLINE_LINUX=""; fi',
        ". /etc/default/grub.local",
        'GRUB_CMDLINE_LINUX="$((1))"',
        'eval "GRUB_CMDLINE_LINUX=x"',
        "GRUB_CMDLINE_LINUX=$'intel_iommu=off'",
        'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX#*intel_iommu=on}"',
        'X="$(echo)" GRUB_CMDLINE_LINUX=',
    ],
)
def test_an_unevaluated_statement_warns_naming_file_and_line(tmp_path: Path, line: str) -> None:
    host, number = _with_defaults_line(tmp_path, line)
    result = run_check("next_boot", host)
    assert result.verdict is Verdict.WARN, f"expected WARN for {line!r}, found:\n{result.explain()}"
    assert f"/etc/default/grub line {number}" in result.summary, result.explain()


def test_a_subshell_for_another_variable_keeps_the_pass(tmp_path: Path) -> None:
    host, _ = _with_defaults_line(
        tmp_path, "GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\""
    )
    result = run_check("next_boot", host)
    assert result.verdict is Verdict.PASS, result.explain()
