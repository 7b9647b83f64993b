"""The nested tier's own helpers, without a lab: a wait reports how long the event took and a failure names
what was expected, what was found and where to look; a tmt run that left no result says why (no TypeError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.nested.conftest import wait_exit, wait_until
from tests.nested.test_fleet_in_lab import PLAN, _collected

TMT_SAID = subprocess.CompletedProcess(
    ["tmt"], 2, stdout="prepare\n", stderr="fail: Command 'apt install -y apt-file' returned 100.\n"
)


def _results(workdir: Path, results: object) -> None:
    execute = workdir / PLAN.lstrip("/") / "execute"
    execute.mkdir(parents=True)
    (execute / "results.yaml").write_text(yaml.safe_dump(results))


@pytest.mark.parametrize(
    "results",
    [
        None,  # no results.yaml at all
        [],  # an empty one
        [{"name": "/fleet/other", "result": "pass"}],  # not the test that should have run
        [
            {
                "name": "/fleet/validate",
                "result": "error",
                "data-path": None,
                "log": [],
                "note": ["prepare failed"],
            }
        ],
    ],
    ids=["no-file", "empty", "other-test", "never-ran"],
)
def test_a_tmt_run_without_a_result_says_what_tmt_printed_and_where_its_log_is(
    tmp_path: Path, results: object
) -> None:
    if results is not None:
        _results(tmp_path, results)
    with pytest.raises(AssertionError) as failed:
        _collected(tmp_path, TMT_SAID)
    message = str(failed.value)
    assert "expected" in message and str(tmp_path / "log.txt") in message, message
    assert "tmt exited 2" in message and "apt install -y apt-file" in message, message


def test_wait_until_returns_the_time_taken_and_a_timeout_names_what_and_where() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    took = wait_until(third_time, 30, "the third poll")
    assert 0 < took < 30, took
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: False, 0.6, "an event that never comes", "/var/log/where.log")
    message = str(failed.value)
    assert "an event that never comes within 1 s" in message and "/var/log/where.log" in message, message


def test_wait_exit_gives_the_code_and_a_process_past_the_bound_fails_naming_it() -> None:
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    assert wait_exit(quick, 60, "a quick process") == 7
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(AssertionError) as failed:
            wait_exit(slow, 0.3, "a slow process", "its console.log")
        message = str(failed.value)
        assert f"still running (pid {slow.pid})" in message and "its console.log" in message, message
    finally:
        slow.kill()
        slow.wait()
