"""A verdict never contradicts its evidence: no PASS says, in its summary, evidence or hint, that the thing
it passes will not work. Run over every committed snapshot (synthetic and lab-made) and every branch case,
so a note added anywhere (the nested-host notes, a kernel log line) is held to it."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checks.preparation import run_all, run_check
from harness.checks.result import CheckResult, Verdict
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES, write_host
from tests.test_check_branches import CASES, HEALTHY

# What a text says when the thing does not or will not work; a PASS carrying one of these contradicts itself.
NEGATIVE = re.compile(
    r"\b(?:will not|won't|does not|doesn't|cannot|can't|can not) (?:work|be used|be assigned|back)\b"
    r"|\bnot (?:usable|possible|supported|available)\b|\bunusable\b|\bimpossible\b|\bbroken\b"
    r"|\b(?:fails|failed|will fail)\b|\brefuses?\b|\bnothing can\b",
    re.IGNORECASE,
)
SNAPSHOTS = sorted(path.parent.parent for path in FIXTURES.glob("*/.harness/manifest.json"))


def _contradictions(result: CheckResult) -> list[str]:
    if result.verdict is not Verdict.PASS:
        return []
    texts = [result.summary, *result.evidence, result.hint or ""]
    return [text for text in texts if NEGATIVE.search(text)]


def test_the_phrases_catch_what_a_pass_once_said() -> None:
    said = (
        "nested host: emulated VT-d without Caching Mode (dmar0 CM=0): the hypervisor cannot shadow "
        "mappings, so vfio assignment will not work (QEMU: intel-iommu,caching-mode=on)"
    )
    result = CheckResult("iommu_kernel", "t", Verdict.PASS, "14 IOMMU groups", [said])
    assert _contradictions(result) == [said]
    assert _contradictions(replace(result, verdict=Verdict.WARN)) == []


def test_every_snapshot_is_covered() -> None:
    names = {path.name for path in SNAPSHOTS}
    assert {"synthetic-nested-no-caching-mode", "lab-amd-vi", "debian12-virtio"} <= names, (
        f"expected the committed snapshots in {FIXTURES}, found {sorted(names)}"
    )


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_no_pass_on_a_snapshot_says_it_will_not_work(snapshot: Path) -> None:
    for result in run_all(open_host(snapshot)):
        found = _contradictions(result)
        assert not found, (
            f"{snapshot.name}: {result.name} is PASS, yet says it will not work: {found}\n{result.explain()}"
        )


def test_no_pass_in_a_branch_case_says_it_will_not_work(tmp_path: Path) -> None:
    for index, (check, changes, *_rest) in enumerate(CASES):
        write_host(replace(HEALTHY, name="t", **changes), tmp_path / str(index))
        result = run_check(check, open_host(tmp_path / str(index)))
        found = _contradictions(result)
        assert not found, (
            f"case {index} {check} {sorted(changes)}: PASS, yet says {found}\n{result.explain()}"
        )


def test_without_caching_mode_the_evidence_says_what_works_and_what_does_not() -> None:
    """Measured in the lab (shared/lab-findings.md, 2026-12-02): emulated devices work through vfio behind an
    emulated VT-d with caching-mode=off; only the outer host's own devices need caching mode."""
    host = open_host(FIXTURES / "synthetic-nested-no-caching-mode")
    results = {result.name: result for result in run_all(host)}
    for name in ("iommu_firmware", "iommu_kernel", "interrupt_remapping"):
        note = next(line for line in results[name].evidence if "Caching Mode" in line)
        assert results[name].verdict is Verdict.PASS, results[name].explain()
        assert "devices the hypervisor emulates can be bound to vfio-pci" in note, note
        assert "caching-mode=on" in note and "physical device of the outer host" in note, note
