"""The lab's part of a run's reports inside the nested host: a pytest plugin (the lab names it in
``PYTEST_PLUGINS`` for L1) that says which QEMU runs L1 and which planned devices L1 lacks, and why."""

from __future__ import annotations

import os

import pytest

from harness.lab.paths import LAB_QEMU_ENV, LAB_SKIPPED_ENV


@pytest.hookimpl(optionalhook=True)
def pytest_harness_host_properties(config: pytest.Config) -> dict[str, str]:
    return lab_host_properties()


def lab_host_properties() -> dict[str, str]:
    """What the lab set in L1's environment, under the names the reports use (nothing outside a lab)."""
    found = {}
    for name, variable in (("lab_l1_qemu", LAB_QEMU_ENV), ("lab_skipped_devices", LAB_SKIPPED_ENV)):
        if value := os.environ.get(variable):
            found[name] = value
    return found
