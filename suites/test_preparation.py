"""Is this host prepared for PCI device assignment? One test per check, so JUnit shows each verdict."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.checks.preparation import PREPARATION_CHECKS, CheckPlan, run_check
from harness.checks.result import CheckResult
from harness.host.host import Host


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
    record_property("harness.host.hostname", harness_host.name)
    record_property("harness.host.kernel", harness_host.kernel.release)
    record_property("harness.host.cmdline", harness_host.kernel.cmdline_text)
    if harness_host.virtual_machine is not None:  # the summary says it once; each check's evidence says more
        record_property("harness.host.virtual_machine", harness_host.virtual_machine.summary())
    if check_name == "libvirt_ready" and harness_host.libvirt.reachable:
        record_property("harness.host.libvirt", harness_host.libvirt.library_version)
        record_property("harness.host.qemu", harness_host.libvirt.hypervisor_version)
        record_property("harness.host.libvirt_uri", harness_host.libvirt.uri)
    harness_verdict(result)
