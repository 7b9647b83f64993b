"""The functional VFIO proof and the preparation checks agree: where the kernel refuses VFIO (no interrupt
remapping), ``interrupt_remapping`` FAILs; where it accepts, the check PASSes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.lab.lab import Lab, booted_lab
from tests.nested.conftest import LABS, REPO, VENV_BIN, checked_exec, lab_name

pytestmark = pytest.mark.nested

PROVE = (
    f'cd {REPO} && {VENV_BIN}/python -c "import json, os; from harness.host.vfio import prove_vfio; '
    "g = int(os.path.basename(os.readlink('/sys/bus/pci/devices/{bdf}/iommu_group'))); "
    "p = prove_vfio('{bdf}', g); print(json.dumps(dict(works=p.works, at=p.refused_at, errno=p.errno, "
    'explain=p.explain())))"'
)


@pytest.fixture(scope="module")
def intremap_off_lab() -> Iterator[Lab]:
    with booted_lab(LABS / "intremap-off.toml", name=lab_name("proof-intremap-off")) as lab:
        yield lab


def _proof_and_check(lab: Lab) -> tuple[dict[str, object], str]:
    bdf = lab.device("nic0").guest_bdf
    assert bdf is not None
    name = "pci_" + bdf.replace(":", "_").replace(".", "_")
    checked_exec(lab, f"virsh nodedev-detach {name}")
    try:
        proof = json.loads(checked_exec(lab, PROVE.format(bdf=bdf)).strip().splitlines()[-1])
    finally:
        checked_exec(lab, f"virsh nodedev-reattach {name}")
    rc, output = lab.exec(f"{VENV_BIN}/hostdev-harness check --json")
    assert rc in (0, 1), f"hostdev-harness check exited {rc}: {output[-2000:]}"
    verdicts = {row["name"]: row["verdict"] for row in json.loads(output[output.index("[") :])}
    return proof, verdicts["interrupt_remapping"]


def test_without_interrupt_remapping_the_kernel_refuses_and_the_check_fails(intremap_off_lab: Lab) -> None:
    proof, verdict = _proof_and_check(intremap_off_lab)
    assert proof["works"] is False and proof["at"] == "VFIO_SET_IOMMU" and proof["errno"] == 1, proof
    assert "interrupt remapping" in str(proof["explain"]), proof
    assert verdict == "FAIL", (
        f"the kernel refused VFIO ({proof['explain']}) but interrupt_remapping is {verdict}"
    )


def test_with_interrupt_remapping_the_kernel_accepts_and_the_check_passes(default_lab: Lab) -> None:
    proof, verdict = _proof_and_check(default_lab)
    assert proof["works"] is True, proof
    assert verdict == "PASS", (
        f"the kernel accepted VFIO ({proof['explain']}) but interrupt_remapping is {verdict}"
    )
