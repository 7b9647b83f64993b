"""A boot whose L1 kernel lost its timer under TCG is told from a slow one (harness.lab.lab.stalled_boot)."""

from __future__ import annotations

from pathlib import Path

from harness.lab.lab import STALLED_TIMER_LINE, stalled_boot

STALLED = Path(__file__).resolve().parents[1] / "fixtures/consoles/l1-timer-stall-qemu10-tcg.log"


def test_a_console_with_repeated_timer_stall_reports_is_a_stalled_boot() -> None:
    # Captured on this 2-core machine: L1 stopped 2.7 s into its boot and printed only these until 180 s.
    reason = stalled_boot(STALLED.read_text())
    assert reason is not None and "stalled" in reason, (
        f"expected a stalled boot from {STALLED}, got {reason!r}"
    )


def test_one_stall_report_is_only_a_slow_boot() -> None:
    text = STALLED.read_text()
    first_only = text[: text.index(STALLED_TIMER_LINE, text.index(STALLED_TIMER_LINE) + 1)]
    assert stalled_boot(first_only) is None, (
        "a single RCU stall report must not restart a boot that may go on"
    )


def test_a_healthy_console_is_not_a_stalled_boot() -> None:
    healthy = (
        "[    2.679541] shpchp 0000:04:00.0: Slot initialization failed\nhostdev-lab[18.32]: stage2 done\n"
    )
    assert stalled_boot(healthy) is None
