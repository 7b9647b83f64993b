"""A device without an IOMMU group is told the true reason: "the IOMMU is not active" only when it is not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.inventory import assess_all
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES, Pci, base_devices, write_host
from tests.test_check_branches import AMD, HEALTHY

SNAPSHOTS = sorted(path.parent.parent for path in FIXTURES.glob("*/.harness/manifest.json"))


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[path.name for path in SNAPSHOTS])
def test_not_active_is_said_only_where_the_kernel_made_no_groups(snapshot: Path) -> None:
    host = open_host(snapshot)
    groups = host.kernel.iommu_group_count
    for assessment in assess_all(host):
        if assessment.device.iommu_group is not None:
            continue
        reason = assessment.explain()
        if int(assessment.device.class_code, 16) >> 8 == 0x0806:  # the IOMMU's own function, on or off
            assert "is the IOMMU itself" in reason, f"{snapshot.name}: {assessment.device.address}: {reason}"
            continue
        assert ("not active" in reason) == (groups == 0), (
            f"{snapshot.name}: {assessment.device.address} without a group, {groups} IOMMU groups on the host: "
            f"{reason}"
        )


def test_the_amd_iommu_function_on_the_lab_snapshot() -> None:
    host = open_host(FIXTURES / "lab-amd-vi")
    iommu = next(a for a in assess_all(host) if str(a.device.address) == "0000:00:01.0")
    assert iommu.verdict == "not assignable"
    assert "is the IOMMU itself (class 0x080600)" in iommu.explain(), iommu.explain()


UNTRANSLATED = Pci("0000:00:14.0", "pci0000:00/0000:00:14.0", "8086", "a36d", "0x0c0330", "xhci_hcd", None)
IOMMU_FUNCTION = Pci("0000:00:00.2", "pci0000:00/0000:00:00.2", "1022", "1481", "0x080600", None, None)


@pytest.mark.parametrize(
    ("base", "groups", "device", "reason"),
    [
        (HEALTHY, True, UNTRANSLATED, "although the IOMMU is active"),
        (AMD, True, IOMMU_FUNCTION, "is the IOMMU itself"),
        (HEALTHY, False, UNTRANSLATED, "the IOMMU is not active on this host"),
    ],
    ids=["active-untranslated", "iommu-function", "iommu-off"],
)
def test_each_reason_for_no_group(base, groups: bool, device: Pci, reason: str, tmp_path: Path) -> None:
    write_host(replace(base, name="t", groups=groups, devices=[*base_devices(), device]), tmp_path / "t")
    found = next(a for a in assess_all(open_host(tmp_path / "t")) if str(a.device.address) == device.address)
    assert found.device.iommu_group is None and reason in found.explain(), (
        f"expected {reason!r} for {device.address}, found: {found.explain()}"
    )
