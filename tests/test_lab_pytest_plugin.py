"""The nested tier's plugin (harness.lab.pytest_plugin) without booting anything: a stand-in default lab."""

from __future__ import annotations

import pytest

CONFTEST = """
from pathlib import Path

import pytest

from harness.lab.devices import LabDevice
from harness.lab.lab import Lab
from harness.lab.qemu import Ports


@pytest.fixture(scope="session")
def default_lab():
    nvme = LabDevice(id="nvme0", kind="nvme-sriov", model="nvme", role="test", qemu_id="nvme0",
                     root_port="rp-nvme0", topology=["08.0", "00.0"], assignable=True)
    return Lab(name="fake", state_dir=Path("/nonexistent"), ports=Ports(1, 2), devices=[nvme],
               skipped_devices=["sriovnic0"], skipped_reasons={"sriovnic0": "QEMU 7.2 has no 'igb' device"})
"""


def test_device_marker_skips_naming_what_the_lab_lacks_and_why(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.harness_lab_device("igb")
        def test_needs_igb(default_lab):
            pass

        @pytest.mark.harness_lab_device("sriovnic0", "nvme0")
        def test_needs_both(lab):
            pass

        @pytest.mark.harness_lab_device("nvme-sriov", "nvme", "nvme0")
        def test_needs_nvme_by_kind_model_and_id(lab):
            assert lab.name == "fake"  # a module without harness_lab_spec gets the session's lab

        def test_needs_nothing():
            pass
        """
    )
    result = pytester.runpytest("-p", "harness.lab.pytest_plugin", "--strict-markers", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED *lab fake has no igb (sriovnic0: QEMU 7.2 has no 'igb' device)",
            "SKIPPED *lab fake has no sriovnic0 (QEMU 7.2 has no 'igb' device)",
        ]
    )


def test_device_marker_without_a_lab_fixture_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.harness_lab_device("igb")
        def test_no_lab():
            pass
        """
    )
    result = pytester.runpytest("-p", "harness.lab.pytest_plugin", "--strict-markers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*harness_lab_device needs a `lab` or `default_lab` fixture*"])
