"""--harness-matrix=cover: each test variant once, each device at least once; full (default) runs them all."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

pytestmark = pytest.mark.harness_matrix("address")
DEVICES = ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"]

@pytest.mark.parametrize("address", DEVICES)
def test_detach(address):
    print("RAN", "detach", address)

@pytest.mark.parametrize("address", DEVICES)
@pytest.mark.parametrize("managed", [True, False])
def test_guest(address, managed):
    print("RAN", "guest", managed, address)

def test_not_on_the_axis():
    print("RAN", "plain")
"""


def _ran(result: pytest.RunResult) -> set[str]:
    return {line.split("RAN ", 1)[1] for line in result.outlines if "RAN " in line}


def test_full_is_the_default_and_runs_everything(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-s", "--harness-report-dir", str(pytester.path))
    result.assert_outcomes(passed=3 + 6 + 1)


def test_cover_keeps_each_variant_once_and_each_device_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-s", "--harness-matrix=cover", "--harness-report-dir", str(pytester.path))
    # Three variants (detach, guest managed, guest unmanaged) on three devices: one run each, rotating.
    result.assert_outcomes(passed=4, deselected=6)
    ran = _ran(result)
    assert "plain" in ran, f"a test without the device axis must always run; ran {sorted(ran)}"
    devices = {line.rsplit(" ", 1)[1] for line in ran if line != "plain"}
    assert devices == {"0000:01:00.0", "0000:02:00.0", "0000:03:00.0"}, (
        f"every device once; ran {sorted(ran)}"
    )
    assert {line.rsplit(" ", 1)[0] for line in ran} == {"detach", "guest True", "guest False", "plain"}, (
        sorted(ran)
    )
    result.stdout.fnmatch_lines(["*--harness-matrix=cover: each test once and each device at least once*"])


def test_cover_adds_a_run_for_a_device_no_variant_reached(pytester: pytest.Pytester) -> None:
    suite = SUITE.replace('"0000:03:00.0"]', '"0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]')
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest("-s", "--harness-matrix=cover", "--harness-report-dir", str(pytester.path))
    devices = {line.rsplit(" ", 1)[1] for line in _ran(result) if line != "plain"}
    assert len(devices) == 5, (
        f"five devices, three variants: every device still runs once; ran {sorted(_ran(result))}"
    )
    result.assert_outcomes(passed=6, deselected=10)  # 5 devices x 3 variants + 1 plain, 6 kept


def test_a_bad_ini_value_is_one_usage_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-o", "harness_matrix=some", "--harness-report-dir", str(pytester.path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*harness_matrix = 'some': use one of full, cover*"])
