"""Is this host prepared for PCI device assignment? One test per check, so JUnit shows each verdict."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.checks.preparation import PREPARATION_CHECKS, CheckPlan, run_check
from harness.checks.result import CheckResult
from harness.host.host import Host
from harness.report.model import opened_host_properties


@pytest.mark.parametrize("check_name", list(PREPARATION_CHECKS))
def test_preparation(
    check_name: str,
    harness_host: Host,
    harness_plan: CheckPlan,
    harness_verdict: Callable[[CheckResult], None],
    record_property: Callable[[str, object], None],
) -> None:
    result = run_check(check_name, harness_host, harness_plan)
    # The host under test, which is not the machine pytest reports from when it reads a snapshot.
    for name, value in opened_host_properties(harness_host, libvirt=check_name == "libvirt_ready"):
        record_property(name, value)
    harness_verdict(result)
