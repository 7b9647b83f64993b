"""Fault labs: each boots a nested host with one thing broken, shows the fault with raw evidence from L1,
and checks that ``hostdev-harness check --json`` run inside L1 gives the right check the right verdict
and a hint that names the fix.

Intel VT-d labs and AMD-Vi labs (QEMU's amd-iommu, on the newer QEMU the lab brings and on Debian 12's
QEMU 7.2). The AMD labs also walk QEMU's VFIO call sequence on a NIC (the functional ground truth): it
reaches a device fd on a healthy AMD-Vi lab and stops at VFIO_SET_IOMMU (EPERM) without interrupt remapping.

One lab per fault, booted once (module-scoped, parametrized) while the session's default lab keeps running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from harness.lab.lab import Lab
from harness.lab.pytest_plugin import BootLab
from tests.nested.conftest import PROVE, REPO, VENV_BIN, checked_exec

pytestmark = pytest.mark.nested
STDERR_MARK = "@@hostdev-lab-stderr@@"


@dataclass(frozen=True)
class Fault:
    spec: str
    # Shell commands run in L1 whose combined output must contain each expected line.
    evidence: tuple[tuple[str, str], ...]
    verdicts: dict[str, str]
    # A fragment the hint of a check must contain: the fix, named.
    hints: dict[str, str] = field(default_factory=dict)
    # What the functional VFIO proof (harness.host.vfio) says for nic0: "works", or the refused step
    # and errno ("VFIO_SET_IOMMU errno 1"); None: not probed.
    vfio: str | None = None
    # Why the assignment suite skips its cycles in this lab (a fragment of the skip reason); None: not run.
    assignment_skip: str | None = None


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
        assignment_skip="has no IOMMU group: the IOMMU is not active on this host",
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
    Fault(
        "amd-vi",
        (
            ("test -e /sys/firmware/acpi/tables/IVRS && echo ivrs", "ivrs"),
            ("ls /sys/class/iommu", "ivhd0"),
            ("test -d /sys/class/iommu/ivhd0/amd-iommu && echo amd-iommu", "amd-iommu"),
            ("dmesg | grep -o 'AMD-Vi: Interrupt remapping enabled'", "AMD-Vi: Interrupt remapping enabled"),
            (
                "dmesg | grep -o 'iommu: Default domain type: Passthrough'",
                "iommu: Default domain type: Passthrough",
            ),
            ("test $(ls /sys/kernel/iommu_groups | wc -l) -gt 8 && echo groups", "groups"),
        ),
        {
            "iommu_firmware": "PASS",
            "iommu_kernel": "PASS",
            "interrupt_remapping": "PASS",
            "vfio_ready": "PASS",
            "libvirt_ready": "PASS",
        },
        vfio="works",
    ),
    Fault(
        "amd-vi-qemu72",
        (
            ("ls /sys/class/iommu", "ivhd0"),
            ("dmesg | grep -o 'AMD-Vi: Interrupt remapping enabled'", "AMD-Vi: Interrupt remapping enabled"),
        ),
        {"iommu_firmware": "PASS", "iommu_kernel": "PASS", "interrupt_remapping": "PASS"},
        vfio="works",
    ),
    Fault(
        "amd-iommu-off",
        (
            ("test -e /sys/firmware/acpi/tables/IVRS && echo ivrs", "ivrs"),
            ("ls /sys/class/iommu | wc -l", "0"),
            ("ls /sys/kernel/iommu_groups | wc -l", "0"),
        ),
        {"iommu_firmware": "PASS", "iommu_kernel": "FAIL", "interrupt_remapping": "FAIL"},
        {"iommu_kernel": "remove amd_iommu=off", "interrupt_remapping": "iommu_kernel"},
    ),
    Fault(
        "amd-intremap-off",
        (
            (
                "dmesg | grep -o 'AMD-Vi: Disabling interrupt remapping'",
                "AMD-Vi: Disabling interrupt remapping",
            ),
            ("test $(ls /sys/kernel/iommu_groups | wc -l) -gt 8 && echo groups", "groups"),
        ),
        {"iommu_kernel": "PASS", "interrupt_remapping": "FAIL"},
        {"interrupt_remapping": "amd-iommu,intremap=on"},
        vfio="VFIO_SET_IOMMU errno 1",
    ),
]


@pytest.fixture(scope="module", params=FAULTS, ids=[fault.spec for fault in FAULTS])
def fault_lab(
    request: pytest.FixtureRequest, default_lab: Lab, boot_lab: BootLab
) -> Iterator[tuple[Fault, Lab]]:
    fault: Fault = request.param
    if fault.spec == "default":
        yield fault, default_lab  # the session's lab: no second boot
        return
    with boot_lab(fault.spec) as lab:
        yield fault, lab


def test_fault_shows_in_raw_evidence(fault_lab: tuple[Fault, Lab]) -> None:
    fault, lab = fault_lab
    for command, expected in fault.evidence:
        rc, output = lab.exec(command)
        assert expected in output.split("\n"), (
            f"lab {fault.spec}: `{command}` should print {expected!r}, printed {output!r} (exit {rc}); "
            f"reproduce: hostdev-lab run fixtures/labs/{fault.spec}.toml -- sh -c {command!r}"
        )
    if fault.vfio is not None:
        nic = lab.device("nic0").guest_bdf
        assert nic is not None
        nodedev = "pci_" + nic.replace(":", "_").replace(".", "_")
        checked_exec(lab, f"virsh nodedev-detach {nodedev}")
        try:
            output = checked_exec(lab, PROVE.format(bdf=nic))
        finally:
            checked_exec(lab, f"virsh nodedev-reattach {nodedev}")
        proof = json.loads(output.strip().splitlines()[-1])
        found = "works" if proof["works"] else f"{proof['at']} errno {proof['errno']}"
        assert found == fault.vfio, (
            f"lab {fault.spec}: the VFIO proof on {nic} should give {fault.vfio!r}, gave {found!r}: "
            f"{proof['explain']}\nkernel log tail: {lab.exec('dmesg | tail -5')[1]}"
        )


def test_assignment_suite_skips_naming_why(fault_lab: tuple[Fault, Lab]) -> None:
    """Where no device can be assigned, the cycles skip with the reason, and change nothing."""
    fault, lab = fault_lab
    if fault.assignment_skip is None:
        return  # this lab's suites run in full elsewhere (test_suites_in_lab, test_changes_in_lab)
    junit = f"/tmp/assignment-{fault.spec}.xml"
    lab.exec(
        f"{VENV_BIN / 'pytest'} {REPO / 'suites' / 'test_assignment.py'} -k 'detach_reattach or managed' "
        f"-p no:cacheprovider --junitxml {junit} --harness-report-dir /tmp/assignment-reports",
        cwd=str(REPO),
    )
    output = checked_exec(lab, f"cat {junit}")
    skipped = [line for line in output.splitlines() if "<skipped" in line]
    assert skipped and all(fault.assignment_skip in line for line in skipped), (
        f"lab {fault.spec}: expected every cycle to skip with {fault.assignment_skip!r}:\n{output[-3000:]}"
    )
    assert "<failure" not in output and "<error" not in output, output[-3000:]


def test_check_gives_the_expected_verdicts(fault_lab: tuple[Fault, Lab]) -> None:
    fault, lab = fault_lab
    command = f"{VENV_BIN / 'hostdev-harness'} check --json-list"
    # stdout (the JSON) first, then stderr after a marker, so log lines never mix into the JSON.
    _rc, output = lab.exec(
        f"{command} 2>/tmp/check.err; echo; echo {STDERR_MARK}; cat /tmp/check.err", cwd=str(REPO)
    )
    stdout, _, stderr = output.partition(STDERR_MARK)
    # A missing subcommand is a broken build, never a reason to skip.
    assert "invalid choice" not in stderr, (
        f"`{command}` in lab {fault.spec} is not a command:\n{stderr[-1500:]}"
    )
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
            f"reproduce: hostdev-lab run fixtures/labs/{fault.spec}.toml -- {command}"
        )
    for name, fragment in fault.hints.items():
        hint = verdicts[name].get("hint") or ""
        assert fragment in hint, (
            f"lab {fault.spec}: the hint of {name} should name {fragment!r}, it says {hint!r}; "
            f"reproduce: hostdev-lab run fixtures/labs/{fault.spec}.toml -- {command}"
        )
