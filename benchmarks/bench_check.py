#!/usr/bin/env python3
"""Benchmark ``hostdev-harness check`` against ``virt-host-validate qemu``, interleaved in the same run.

    .venv/bin/python benchmarks/bench_check.py --runs 5

For each run: the wall time of ``virt-host-validate qemu``; for ``hostdev-harness check``, the time until
every check that does not need libvirt has answered (``no_libvirt_s``: the moment the first line after
them appears, the private-libvirtd progress line when no libvirtd runs) and the total (``total_s``,
which includes starting a private libvirtd and libvirt's first QEMU probe when none answers).
Prints one JSON object: medians and the ratios to virt-host-validate's median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.checks.preparation import NEEDS_LIBVIRT, PREPARATION_CHECKS  # noqa: E402
from harness.libvirt.connection import DEFAULT_URI, answers  # noqa: E402

HARNESS = Path(sys.executable).parent / "hostdev-harness"


def time_virt_host_validate() -> float:
    started = time.monotonic()
    subprocess.run(["virt-host-validate", "qemu"], capture_output=True, check=False)
    return time.monotonic() - started


def time_harness_check() -> dict[str, float]:
    without_libvirt = len(PREPARATION_CHECKS) - len(NEEDS_LIBVIRT)
    env = {**os.environ, "HARNESS_PROGRESS": "plain"}
    started = time.monotonic()
    process = subprocess.Popen(
        [str(HARNESS), "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    titles = 0
    no_libvirt: float | None = None
    for line in process.stdout:
        titles += line.startswith("Checking")
        if no_libvirt is None and (titles > without_libvirt or line.startswith("hostdev-harness:")):
            no_libvirt = time.monotonic() - started
    process.wait()
    total = time.monotonic() - started
    return {"no_libvirt_s": no_libvirt if no_libvirt is not None else total, "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("virt-host-validate") is None:
        sys.exit("virt-host-validate is missing (Debian: apt-get install libvirt-clients)")
    baseline: list[float] = []
    harness: list[dict[str, float]] = []
    for _ in range(args.runs):  # interleaved, so load changes hit both alike
        baseline.append(time_virt_host_validate())
        harness.append(time_harness_check())
    base = statistics.median(baseline)
    no_libvirt = statistics.median(run["no_libvirt_s"] for run in harness)
    total = statistics.median(run["total_s"] for run in harness)
    result: dict[str, Any] = {
        "runs": args.runs,
        "load_avg_1m": os.getloadavg()[0],
        "virt_host_validate_s": round(base, 3),
        "harness_no_libvirt_s": round(no_libvirt, 3),
        "harness_total_s": round(total, 3),
        "ratio_no_libvirt_to_vhv": round(no_libvirt / base, 2),
        "ratio_total_to_vhv": round(total / base, 2),
        "libvirtd_answers_at_system_uri": answers(DEFAULT_URI),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
