"""Pick the accelerator for L1: KVM only when a probe guest really boots with it, else TCG.

``/dev/kvm`` existing proves little here: on PVM-style nested KVM a stock kernel hangs after
"Probing EDD". The probe boots the lab kernel and initramfs with ``-accel kvm`` and waits for the
initramfs to print its marker; the verdict is cached per (L0 kernel, QEMU, lab kernel).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from harness.lab.kernel import PROBE_MARKER, KernelImage
from harness.lab.l1_qemu import qemu_version
from harness.lab.qemu import probe_argv

ACCEL_ENV = "HOSTDEV_LAB_ACCEL"
PROBE_TIMEOUT = 15.0


def _probe_kvm(kernel: KernelImage, initramfs: Path, timeout: float) -> tuple[bool, str]:
    process = subprocess.Popen(
        probe_argv(kernel.vmlinuz, initramfs, "kvm"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return False, f"no marker within {timeout:.0f}s: " + output.decode(errors="replace")[-300:]
    text = output.decode(errors="replace")
    if PROBE_MARKER in text:
        return True, "probe guest booted under KVM"
    return False, f"probe exited {process.returncode}: {text[-300:]}"


def choose_accel(cache: Path, kernel: KernelImage, initramfs: Path) -> str:
    """``kvm`` or ``tcg``; ``$HOSTDEV_LAB_ACCEL`` overrides the probe."""
    forced = os.environ.get(ACCEL_ENV)
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = f"{platform.release()}|{qemu_version()}|{kernel.package}"
    cache_file = cache / "accel.json"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return str(cached["accel"])
    except (OSError, ValueError):
        pass
    started = time.monotonic()
    works, evidence = _probe_kvm(kernel, initramfs, PROBE_TIMEOUT)
    accel = "kvm" if works else "tcg"
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(
        json.dumps(
            {
                "key": key,
                "accel": accel,
                "evidence": evidence,
                "probe_seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )
    return accel
