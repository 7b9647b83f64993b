"""The isolation lab (fixtures/labs/isolation.toml) booted once: the inventory inside it reports ACS on each
device's path and says why devices share a group, as the kernel really grouped them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.lab.lab import Lab
from tests.nested.conftest import REPO, VENV_BIN, checked_exec

pytestmark = [pytest.mark.nested, pytest.mark.harness_lab_spec("isolation")]


@pytest.fixture(scope="module")
def inventory(lab: Lab) -> tuple[Lab, dict[str, dict[str, Any]]]:
    command = f"cd {REPO} && {VENV_BIN / 'hostdev-harness'} inventory --json 2>/dev/null"
    rows = json.loads(checked_exec(lab, command))
    return lab, {row["address"]: row for row in rows}


def _row(lab: Lab, rows: dict[str, dict[str, Any]], device_id: str) -> dict[str, Any]:
    bdf = lab.device(device_id).guest_bdf
    assert bdf in rows, f"{device_id} ({bdf}) missing from the inventory in L1: {sorted(rows)}"
    return rows[bdf]


def test_device_on_a_port_with_acs_is_alone_with_acs_on_its_path(inventory) -> None:
    lab, rows = inventory
    row = _row(lab, rows, "acs0")
    assert row["group_members"] == [row["address"]], row
    assert row["acs_path"].startswith("ACS on the whole path"), (row, lab.console_tail(10))


def test_port_without_acs_pulls_its_device_into_its_group(inventory) -> None:
    lab, rows = inventory
    row = _row(lab, rows, "noacs0")
    others = [rows[member] for member in row["group_members"] if member != row["address"]]
    assert len(others) == 1 and "is a bridge or port" in " ".join(others[0]["reasons"]), (row, others)
    assert "(root port): no ACS capability" in row["acs_path"], row
    assert "(root port) has no ACS" in (row["group_reason"] or ""), row
    assert row["verdict"] == "assignable", row  # a port in the group does not make it unviable


def test_multifunction_device_without_acs_shares_one_group(inventory) -> None:
    lab, rows = inventory
    first, second = _row(lab, rows, "mf0-f0"), _row(lab, rows, "mf0-f1")
    assert first["iommu_group"] == second["iommu_group"], (first, second)
    assert "a multi-function device without ACS" in first["acs_path"], first
    assert "of one multi-function device without ACS" in (second["group_reason"] or ""), second
