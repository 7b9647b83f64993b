"""``check --json`` and ``inventory --json`` say what report.json says: on every committed snapshot the host
block and the checks of ``check --json`` equal report.json's (the reporter's model built directly from the
properties the suites record), and ``inventory --json``'s devices equal report.json's devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from harness import cli
from harness.checks.preparation import PREPARATION_CHECKS, CheckPlan, run_check
from harness.inventory import assess_all
from harness.opening import open_host
from harness.report import run_report
from harness.report.model import host_block, opened_host_properties
from harness.report.properties import HOST_PREFIX, check_properties, device_properties
from harness.report.run_report import CHECK_SCHEMA_RESOURCE, report_schema
from tests.synthetic_hosts import FIXTURES

SNAPSHOTS = sorted(path.parent.parent for path in FIXTURES.glob("*/.harness/manifest.json"))


def _report(snapshot: Path) -> dict[str, Any]:
    """report.json of the preparation and inventory suites on ``snapshot``, as the reporter builds it."""
    host = open_host(snapshot)
    records = []
    for name in PREPARATION_CHECKS:
        result = run_check(name, host, CheckPlan(planned_devices=1))
        found = opened_host_properties(host, libvirt=name == "libvirt_ready")
        records.append(
            run_report.TestRecord(f"test_preparation[{name}]", properties=found + check_properties(result))
        )
    for assessment in assess_all(host):
        nodeid = f"test_device[{assessment.device.address.nodedev_name}]"
        records.append(
            run_report.TestRecord(nodeid, outcome="skipped", properties=device_properties(assessment))
        )
    recorded = {
        name[len(HOST_PREFIX) :]: value
        for record in records
        for name, value in record.properties
        if name.startswith(HOST_PREFIX)
    }
    return run_report.build_report(
        records,
        host_block(str(snapshot), recorded),
        ["pytest"],
        str(snapshot),
        expected_checks=list(PREPARATION_CHECKS),
    )


def _cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code in (0, 1), f"{argv}: exit {code}"
    return json.loads(out)


def _as_report_spells_it(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An inventory row's report.json fields: report.json spells an unbound driver "none" and the reasons
    as one sentence."""
    spelled = {
        **row,
        "driver": row["driver"] or "none",
        "reasons": "; ".join(row["reasons"]) or "can be assigned",
    }
    return {name: spelled[name] for name in names}


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_check_and_inventory_json_say_what_report_json_says(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(snapshot)
    check = _cli_json(["check", "--json", "--snapshot", str(snapshot)], capsys)
    assert check["host"] == report["host"], f"{snapshot.name}: check --json's host block is not report.json's"
    jsonschema.validate(check["host"], report_schema()["properties"]["host"])
    schema = report_schema()
    registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    validator = jsonschema.Draft202012Validator(report_schema(CHECK_SCHEMA_RESOURCE), registry=registry)
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(check)]
    assert not errors, f"{snapshot.name}: check --json breaks check-v1.schema.json: {errors[:5]}"
    assert check["checks"] == [
        {name: value for name, value in entry.items() if name != "nodeid"} for entry in report["checks"]
    ], f"{snapshot.name}: check --json's checks are not report.json's"
    assert check["not_run"] == report["not_run"] == []
    assert check["verdict"] == report["verdict"], (check["verdict"], report["verdict_reason"])

    inventory = _cli_json(["inventory", "--json", "--snapshot", str(snapshot)], capsys)
    shared = [name for name in report["devices"][0] if name not in ("libvirt_view", "nodeid")]
    found = [_as_report_spells_it(row, shared) for row in sorted(inventory, key=lambda row: row["address"])]
    expected = [{name: entry[name] for name in shared} for entry in report["devices"]]
    assert found == expected, f"{snapshot.name}: inventory --json's devices are not report.json's"
    assert all(row["verdict"] == row["assignable"] for row in inventory)
