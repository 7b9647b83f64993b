"""Fault labs: each boots a nested host with one thing broken, shows the fault with raw evidence from L1,
and checks that ``hostdev-harness check --json`` run inside L1 gives the right check the right verdict.

One lab per fault, booted once (module-scoped, parametrized) while the session's default lab keeps running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.lab.lab import Lab, booted_lab
from tests.nested.conftest import LABS, REPO, VENV_BIN, lab_name

pytestmark = pytest.mark.nested
STDERR_MARK = "@@hostdev-lab-stderr@@"


@dataclass(frozen=True)
class Fault:
    spec: str
    # Shell commands run in L1 whose combined output must contain each expected line.
    evidence: tuple[tuple[str, str], ...]
    verdicts: dict[str, str]


FAULTS = [
    Fault(
        "default",
        (
            ("test -e /sys/firmware/acpi/tables/DMAR && echo dmar", "dmar"),
            ("test -c /dev/vfio/vfio && echo vfio", "vfio"),
            ("dmesg | grep -o 'DMAR-IR: Enabled IRQ remapping'", "DMAR-IR: Enabled IRQ remapping"),
        ),
        {
            "iommu_firmware": "PASS",
            "iommu_kernel": "PASS",
            "interrupt_remapping": "PASS",
            "vfio_ready": "PASS",
        },
    ),
    Fault(
        "no-iommu",
        (
            ("test -e /sys/firmware/acpi/tables/DMAR || echo no-dmar", "no-dmar"),
            ("ls /sys/kernel/iommu_groups | wc -l", "0"),
        ),
        {"iommu_firmware": "FAIL"},
    ),
    Fault(
        "iommu-off",
        (
            ("test -e /sys/firmware/acpi/tables/DMAR && echo dmar", "dmar"),
            ("ls /sys/kernel/iommu_groups | wc -l", "0"),
            ("dmesg | grep -o 'DMAR: IOMMU disabled'", "DMAR: IOMMU disabled"),
        ),
        {"iommu_kernel": "FAIL"},
    ),
    Fault(
        "intremap-off",
        (
            ("test $(ls /sys/kernel/iommu_groups | wc -l) -gt 0 && echo groups", "groups"),
            # VT-d extended capability bit 3 (IR) clear: no interrupt remapping.
            ("echo $(( 0x$(cat /sys/class/iommu/dmar0/intel-iommu/ecap) >> 3 & 1 ))", "0"),
        ),
        {"interrupt_remapping": "FAIL"},
    ),
    Fault(
        "unsafe-interrupts",
        (
            ("echo $(( 0x$(cat /sys/class/iommu/dmar0/intel-iommu/ecap) >> 3 & 1 ))", "0"),
            ("cat /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y"),
        ),
        {"interrupt_remapping": "WARN"},
    ),
    Fault(
        "vfio-blacklisted",
        (
            ("test -d /sys/module/vfio_pci || echo no-vfio-pci", "no-vfio-pci"),
            ("test -d /sys/module/vfio && echo vfio-core", "vfio-core"),
        ),
        {"vfio_ready": "FAIL"},
    ),
]


@pytest.fixture(scope="module", params=FAULTS, ids=[fault.spec for fault in FAULTS])
def fault_lab(request: pytest.FixtureRequest, default_lab: Lab) -> Iterator[tuple[Fault, Lab]]:
    fault: Fault = request.param
    if fault.spec == "default":
        yield fault, default_lab  # the session's lab: no second boot
        return
    with booted_lab(LABS / f"{fault.spec}.toml", name=lab_name(fault.spec)) as lab:
        yield fault, lab


def test_fault_shows_in_raw_evidence(fault_lab: tuple[Fault, Lab]) -> None:
    fault, lab = fault_lab
    for command, expected in fault.evidence:
        rc, output = lab.exec(command)
        assert expected in output.split("\n"), (
            f"lab {fault.spec}: `{command}` should print {expected!r}, printed {output!r} (exit {rc}); "
            f"reproduce: hostdev-lab run fixtures/labs/{fault.spec}.toml -- sh -c {command!r}"
        )


def test_check_gives_the_expected_verdicts(fault_lab: tuple[Fault, Lab]) -> None:
    fault, lab = fault_lab
    command = f"{VENV_BIN / 'hostdev-harness'} check --json"
    # stdout (the JSON) first, then stderr after a marker, so log lines never mix into the JSON.
    _rc, output = lab.exec(
        f"{command} 2>/tmp/check.err; echo; echo {STDERR_MARK}; cat /tmp/check.err", cwd=str(REPO)
    )
    stdout, _, stderr = output.partition(STDERR_MARK)
    if "invalid choice: 'check'" in stderr or "not built yet" in stderr:
        pytest.skip("hostdev-harness check --json is not available yet")
    try:
        results = json.loads(stdout)
    except ValueError:
        results = None
    assert isinstance(results, list), (
        f"`{command}` in lab {fault.spec} printed no JSON list:\n{stdout[-1500:]}\nstderr:\n{stderr[-1500:]}"
    )
    verdicts = {item["name"]: item for item in results}
    for name, expected in fault.verdicts.items():
        assert name in verdicts, f"lab {fault.spec}: check {name!r} missing from {sorted(verdicts)}"
        found = verdicts[name]
        assert found["verdict"] == expected, (
            f"lab {fault.spec}: expected {name} {expected}, got {found['verdict']}: "
            f"{found.get('summary', '')} evidence={found.get('evidence')}; "
            f"reproduce: hostdev-lab run fixtures/labs/{fault.spec}.toml -- {' '.join(command)}"
        )
