"""The private libvirtd never outlives the process that started it, however that process ends (issue 18).

A small driver starts one, says where, and is then stopped by SIGTERM, SIGHUP, SIGINT or SIGKILL; the daemon,
its virtlogd and its state directory must go. Needs root and libvirtd (both on this project's machines);
only processes this test started are signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import json, sys, time
from harness.libvirt.daemon import private_libvirtd
with private_libvirtd() as daemon:
    shell = daemon.process.pid
    print(json.dumps({"state_dir": str(daemon.state_dir), "shell": shell}), flush=True)
    time.sleep(600)
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("libvirtd") is None, reason="needs root and libvirtd (a private daemon)"
)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_the_private_libvirtd_goes_with_its_starter(signum: signal.Signals) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        # SIGINT at its default even where the caller ignores it (a shell's background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert driver.stdout is not None
        started = json.loads(driver.stdout.readline() or "{}")
        assert started, f"the driver did not start a private libvirtd (exit {driver.poll()})"
        state_dir, shell = Path(started["state_dir"]), int(started["shell"])
        daemons = _children_of(shell)
        assert daemons, f"no libvirtd/virtlogd below the private daemon's shell {shell}"
        driver.send_signal(signum)
        driver.wait(timeout=120)
        begun = time.monotonic()
        bound = 60.0
        while time.monotonic() - begun < bound:
            left = [pid for pid in (shell, *daemons) if _alive(pid)]
            if not left and not state_dir.exists():
                break
            time.sleep(0.2)
        left = [pid for pid in (shell, *daemons) if _alive(pid)]
        assert not left, f"after {signum.name} to the starter, still running after {bound:.0f}s: {left}"
        assert not state_dir.exists(), f"after {signum.name}, {state_dir} was left behind"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
