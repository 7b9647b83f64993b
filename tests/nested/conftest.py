"""Fixtures for the nested tier: one booted default lab shared by the whole session.

Every lab a test boots gets a name unique to this test process, so two test runs (or a developer's own
``hostdev-lab up``) never collide; each is stopped at the end even if the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab.lab import Lab, booted_lab

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "fixtures" / "labs"
VENV_BIN = Path(sys.executable).parent
HOSTDEV_LAB = str(VENV_BIN / "hostdev-lab")
# pytest in L1 for the suites that need no hypothesis: its plugin would import hypothesis for the summary
# (13 s under TCG), and no cache written into the shared checkout.
L1_PYTEST = f"{VENV_BIN}/pytest -p no:cacheprovider -p no:hypothesispytest"
# The functional VFIO proof (harness.host.vfio) on one device in L1, as one JSON line: .format(bdf=...).
PROVE = (
    f'cd {REPO} && {VENV_BIN}/python -c "import json, os; from harness.host.vfio import prove_vfio; '
    "g = int(os.path.basename(os.readlink('/sys/bus/pci/devices/{bdf}/iommu_group'))); "
    "p = prove_vfio('{bdf}', g); print(json.dumps(dict(works=p.works, at=p.refused_at, errno=p.errno, "
    'explain=p.explain())))"'
)


def lab_name(label: str) -> str:
    return f"t{os.getpid()}-{label}"


def qemu_processes(name: str) -> list[str]:
    """Command lines of QEMU processes that belong to the lab ``name`` (its state dir is on the line)."""
    result = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True, check=False)
    return [
        line for line in result.stdout.splitlines() if f"/{name}/" in line or f"hostdev-lab-{name} " in line
    ]


def checked_exec(lab: Lab, command: str) -> str:
    """Run ``command`` in L1 and return its output; a failure says how to reproduce it."""
    rc, output = lab.exec(command)
    assert rc == 0, (
        f"`{command}` in L1 exited {rc}:\n{output[-3000:]}\nreproduce: hostdev-lab exec --name {lab.name} -- sh -c "
        f"{command!r}\nconsole tail:\n{lab.console_tail(15)}"
    )
    return output


def wait_until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def default_lab() -> Iterator[Lab]:
    with booted_lab(LABS / "default.toml", name=lab_name("default")) as lab:
        yield lab
