"""Helpers for the nested tier. The labs themselves (``default_lab``, ``lab``, ``boot_lab``) and the markers
``harness_lab_spec`` / ``harness_lab_device`` come from :mod:`harness.lab.pytest_plugin`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from harness.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]
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


# A loaded machine (2 cores shared, TCG inside TCG) is slower, never wrong: a test waits for the event with a
# bound well above what a busy machine needs, and says how long the event took.
def wait_until(predicate: object, timeout: float, what: str, where: str = "") -> float:
    """Poll ``predicate`` until it is true; the seconds it took, or an AssertionError naming what was
    awaited, the bound, and where to look (``where``: a log path, a console tail)."""
    assert callable(predicate)
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if predicate():
            took = time.monotonic() - started
            print(f"waited {took:.1f} s for {what}")
            return took
        time.sleep(0.5)
    raise AssertionError(
        f"expected {what} within {timeout:.0f} s, still not after {time.monotonic() - started:.0f} s"
        + (f"; see {where}" if where else "")
    )


def wait_exit(process: subprocess.Popen[bytes], timeout: float, what: str, where: str = "") -> int:
    """The exit code of ``process`` once it exits (within a generous ``timeout``), with the time it took;
    a process still running at the bound fails naming what was awaited and where to look."""
    started = time.monotonic()
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"expected {what} within {timeout:.0f} s, still running (pid {process.pid})"
            + (f"; see {where}" if where else "")
        ) from None
    print(f"waited {time.monotonic() - started:.1f} s for {what} (exit {code})")
    return code
