"""The names under which verdicts travel in ``record_property`` (they survive xdist and reach JUnit)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.checks.result import CheckResult
from harness.inventory import DeviceAssessment

CHECK = "harness.check"
DEVICE = "harness.device"
HOST_PREFIX = "harness.host."


def check_properties(result: CheckResult) -> list[tuple[str, str]]:
    properties = [
        (CHECK, result.name),
        ("harness.title", result.title),
        ("harness.verdict", str(result.verdict)),
        ("harness.summary", result.summary),
    ]
    properties += [("harness.evidence", item) for item in result.evidence if item]
    if result.hint:
        properties.append(("harness.hint", result.hint))
    return properties


def device_properties(assessment: DeviceAssessment) -> list[tuple[str, str]]:
    device = assessment.device
    return [
        (DEVICE, str(device.address)),
        ("harness.nodedev", device.nodedev_name),
        ("harness.description", device.description),
        ("harness.driver", device.driver or "none"),
        ("harness.iommu_group", "none" if device.iommu_group is None else str(device.iommu_group)),
        ("harness.group_members", " ".join(map(str, assessment.group_members))),
        ("harness.sriov", _sriov_text(assessment)),
        ("harness.assignable", assessment.verdict),
        ("harness.reasons", assessment.explain()),
        ("harness.acs_path", assessment.acs_path),
        *([("harness.group_reason", assessment.group_reason)] if assessment.group_reason else []),
    ]


def _sriov_text(assessment: DeviceAssessment) -> str:
    device = assessment.device
    if device.is_sriov_pf:
        return f"PF {device.sriov_numvfs or 0}/{device.sriov_totalvfs} VFs"
    if device.physfn:
        return f"VF of {device.physfn}"
    return ""


def as_dict(properties: Iterable[tuple[str, object]]) -> dict[str, str]:
    """Properties of one test as a dict; repeated names (evidence) are joined with newlines."""
    merged: dict[str, str] = {}
    for name, value in properties:
        merged[name] = f"{merged[name]}\n{value}" if name in merged else str(value)
    return merged
