"""The hotplug and topology suites inside the nested host: every case runs (none skipped) and passes, and
the guest's own PCI tree is in the JUnit properties."""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
from lxml import etree

from harness.lab.lab import Lab
from tests.nested.conftest import L1_PYTEST, REPO

pytestmark = pytest.mark.nested

EXPECTED = {
    "test_detach_from_a_guest_that_does_not_answer_is_reported_as_held",
    "test_attach_of_a_device_another_guest_holds_is_refused",
    "test_attach_into_a_full_bus_fails_clearly",
    "test_detach_of_a_device_the_guest_lacks_fails",
    *(f"test_live_attach_and_detach_proved_by_the_guest[{case}]" for case in
      ("pf-managed", "pf-unmanaged", "vf-managed", "vf-unmanaged")),
    "test_live_and_config_together",
    "test_repeated_cycles_leak_nothing",
    "test_live_hostdev_interface_with_its_mac",
    "test_more_than_31_devices_get_more_buses[pc]",
    "test_more_than_31_devices_get_more_buses[q35]",
    "test_multifunction_slot_is_defined_and_starts",
    "test_live_attach_with_no_free_slot_fails_clearly",
}  # fmt: skip


def test_hotplug_suite_passes_inside_the_default_lab(default_lab: Lab, record_property: object) -> None:
    assert default_lab.guest_image, "the lab built no answering guest image"
    report_dir = REPO / "reports" / f"nested-hotplug-{uuid.uuid4().hex[:8]}"
    suites = f"{REPO}/suites/test_topology.py {REPO}/suites/test_hotplug.py"
    started = time.monotonic()
    try:
        rc, output = default_lab.exec(
            f"cd {REPO} && {L1_PYTEST} {suites} --harness-report-dir {report_dir} "
            f"--junitxml {report_dir}/junit.xml",
            timeout=1500,
        )
        record_property("harness.hotplug_suite_s", round(time.monotonic() - started, 1))  # type: ignore[operator]
        junit = etree.parse(str(report_dir / "junit.xml")).getroot()
        cases = {case.get("name", ""): case for case in junit.iter("testcase")}
        assert set(cases) == EXPECTED, (set(cases) ^ EXPECTED, output[-3000:])
        not_passed = {
            name: [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            for name, case in cases.items()
            if any(child.tag in ("failure", "error", "skipped") for child in case)
        }
        assert not not_passed, f"not passed inside L1: {not_passed}\n{output[-5000:]}"
        assert rc == 0, output[-3000:]
        properties = {
            name: {p.get("name"): p.get("value") or "" for p in case.iter("property")}
            for name, case in cases.items()
        }
        e1000e = properties["test_live_attach_and_detach_proved_by_the_guest[pf-managed]"][
            "harness.guest_pci"
        ]
        assert "=8086:10d3" in e1000e, f"the guest's own PCI tree lacks the hotplugged e1000e: {e1000e}"
        held = properties["test_detach_from_a_guest_that_does_not_answer_is_reported_as_held"]
        assert "did not acknowledge" in held["harness.detach_outcome"], held
        assert held["harness.undo_of_held"], held  # the change's undo said so too, instead of passing
        interface = properties["test_live_hostdev_interface_with_its_mac"]
        assert "=8086:10ca" in interface["harness.guest_pci"], f"the guest lacks the igb VF: {interface}"
        assert "MAC 52:54:00:" in interface["harness.vf_mac"], interface
        boot = {p.get("name"): p.get("value") for p in junit.iter("property")}.get("harness.guest_boot_s")
        record_property("harness.guest_boot_s", boot)  # type: ignore[operator]
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)  # reports/ is the user's; leave it as found
