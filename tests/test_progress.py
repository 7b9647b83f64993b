"""Long steps say what they do: plain lines in CI, a live line on a terminal, nothing when turned off."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.checks.preparation import NEEDS_LIBVIRT, PREPARATION_CHECKS
from harness.progress import PROGRESS_ENV, Progress, human_size


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_say_start_end_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    stream = io.StringIO()
    with Progress("starting a thing", stream=stream, total_bytes=3 * 1024 * 1024) as step:
        step.note("half way")
        step.done("ready")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "hostdev-harness: starting a thing (3.0 MiB) ..."
    assert lines[1].startswith("hostdev-harness: starting a thing: half way (")
    assert lines[2].startswith("hostdev-harness: starting a thing: done in ") and lines[2].endswith(": ready")


def test_live_line_is_redrawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = FakeTerminal()
    with Progress("waiting", stream=terminal, bytes_done=lambda: 2048):
        time.sleep(0.5)
    text = terminal.getvalue()
    assert "\r\033[Khostdev-harness: waiting ... 0 s, 2.0 KiB" in text, text
    assert text.endswith("s\n") and "\r\033[Khostdev-harness: waiting: done in " in text, text


def test_off_means_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "off")
    stream = io.StringIO()
    with Progress("quiet", stream=stream):
        pass
    assert stream.getvalue() == ""


def test_failed_step_says_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "plain")
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Progress("doomed", stream=stream):
        raise RuntimeError("boom")
    assert "doomed: stopped after" in stream.getvalue()


def test_human_size() -> None:
    assert [human_size(n) for n in (5, 2048, 70550672, 3 << 30)] == ["5 B", "2.0 KiB", "67.3 MiB", "3.0 GiB"]


def test_check_answers_the_checks_without_libvirt_first() -> None:
    """Checks that need libvirt come last, so the others are on screen while libvirt is being asked."""
    env = {**os.environ, PROGRESS_ENV: "plain"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hostdev-harness"), "check", "--uri", "test:///default"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    titles = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("Checking")]
    assert len(titles) == len(PREPARATION_CHECKS), result.stdout
    libvirt_titles = [t for t in titles if "libvirt" in t]
    assert titles[-len(NEEDS_LIBVIRT) :] == libvirt_titles, titles
