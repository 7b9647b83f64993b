"""SIGTERM and SIGHUP end a harness command like Ctrl-C: one line, exit 128 + signal number."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

_BODY = (
    "import sys, time; from harness.command import run_command\n"
    "def body():\n    print('ready', flush=True)\n    time.sleep(120)\n    return 0\n"
    "sys.exit(run_command('hostdev-harness', body))\n"
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_takes_the_ctrl_c_path(signum: signal.Signals) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _BODY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # the handler is in place: wait for the event
        started = time.monotonic()
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    expected = 130 if signum == signal.SIGINT else 128 + signum
    assert child.returncode == expected, (
        f"expected exit {expected}, found {child.returncode}; stderr: {err!r}"
    )
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, f"stderr: {err!r}"
    assert time.monotonic() - started < 60


def test_empty_journal_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    for value in ("", " "):
        assert main(["restore", "--journal", value]) == 2
        err = capsys.readouterr().err
        assert "--journal is empty" in err and len(err.strip().splitlines()) == 1, err
