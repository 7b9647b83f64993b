"""Golden files of what every shipped lab spec becomes: the parsed spec, the L1 QEMU argv, the planned devices
and the scripts L1 runs (tests/golden/lab/<spec>-<qemu>.txt), for a QEMU without igb (7.2) and one with it.

A change to how a lab device kind is spelled must leave these byte-identical; if a change is meant, regenerate
with ``HARNESS_UPDATE_GOLDEN=1 pytest tests/test_lab_golden.py`` and review the diff."""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.lab.guest_init import write_guest_files
from harness.lab.kernel import KernelImage
from harness.lab.l1_qemu import L1Qemu, QemuBinary
from harness.lab.qemu import Ports, RuntimePaths, build_machine, wanted_models
from harness.lab.spec import load_spec

CHECKOUT = Path(__file__).resolve().parents[1]
LABS = Path(__file__).resolve().parents[1] / "fixtures" / "labs"
GOLDEN = Path(__file__).resolve().parent / "golden" / "lab"
MODELS_72 = frozenset(
    {"nvme", "nvme-subsys", "e1000e", "e1000", "rtl8139", "pcie-root-port", "pcie-pci-bridge", "intel-iommu",
     "amd-iommu", "virtio-net-pci", "virtio-9p-pci", "virtio-balloon-pci"}
)  # fmt: skip
QEMUS = {"qemu72": MODELS_72, "qemu10": MODELS_72 | {"igb"}}
GUEST_FILES = ("init", "inittab", "early.sh", "stage2.sh")


def _render(spec_file: str, models: frozenset[str], tmp_path: Path) -> str:
    spec = load_spec(LABS / spec_file)
    paths = RuntimePaths(
        state_dir=tmp_path / "state" / "golden",
        reports_dir=tmp_path / "reports",
        qemu_cache_dir=tmp_path / "qemu-cache",
        kernel=tmp_path / "vmlinuz",
        initramfs=tmp_path / "initramfs.cpio",
    )
    paths.state_dir.mkdir(parents=True)
    l1_qemu = L1Qemu(QemuBinary(), "7.2.0", "machine", "golden")
    warnings: list[str] = []
    plan = build_machine(
        spec, paths, Ports(40001, 40002, 40003), accel="tcg", l1_qemu=l1_qemu, models=models,
        warn=warnings.append,
    )  # fmt: skip
    kernel = KernelImage("linux-image-golden", "6.1.0-golden", tmp_path / "kernel")
    write_guest_files(paths.state_dir, spec.name, kernel, paths.reports_dir, [d.model for d in plan.devices])
    spec_data = asdict(spec)
    spec_data.pop("path")
    sections = {
        "spec": json.dumps(spec_data, indent=1, sort_keys=True),
        "wanted models": " ".join(sorted(wanted_models(spec))),
        "argv": "\n".join(shlex.join([arg]) for arg in plan.argv),
        "env": json.dumps(plan.env, sort_keys=True),
        "devices": "\n".join(json.dumps(device.to_json(), sort_keys=True) for device in plan.devices),
        "skipped": json.dumps(plan.skipped, sort_keys=True),
        "warnings": "\n".join(warnings),
        **{name: (paths.state_dir / name).read_text() for name in GUEST_FILES},
    }
    text = "".join(f"=== {title}\n{body.rstrip()}\n" for title, body in sections.items())
    # The checkout's own path (the L1 agent script) differs per clone: golden files name it <checkout>.
    return (
        text.replace(str(tmp_path), "<tmp>")
        .replace(sys.executable, "<python>")
        .replace(str(CHECKOUT), "<checkout>")
    )


@pytest.mark.parametrize("qemu", sorted(QEMUS))
@pytest.mark.parametrize("spec_file", sorted(p.name for p in LABS.glob("*.toml")))
def test_lab_spec_renders_as_its_golden_file(spec_file: str, qemu: str, tmp_path: Path) -> None:
    text = _render(spec_file, QEMUS[qemu], tmp_path)
    path = GOLDEN / f"{spec_file.removesuffix('.toml')}-{qemu}.txt"
    if os.environ.get("HARNESS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, (
        f"{spec_file} on {qemu} differs from {path} (regenerate with HARNESS_UPDATE_GOLDEN=1 if meant)"
    )
