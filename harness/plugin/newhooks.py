"""The hooks the harness's plugin adds to pytest (registered in ``pytest_addhooks``, as pytest-xdist does)."""

from __future__ import annotations

import pytest


def pytest_harness_host_properties(config: pytest.Config) -> dict[str, str] | None:
    """Extra properties of the host under test for every report (report.json, summary.txt, JUnit), after
    the harness's own: e.g. the lab's, inside a nested host, which QEMU runs it. Called once, at the end
    of the run, on the controller."""
