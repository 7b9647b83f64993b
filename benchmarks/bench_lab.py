#!/usr/bin/env python3
"""Benchmark the nested host: boot-to-ready time, cold and warm, and the peak RSS of L1's QEMU.

    .venv/bin/python benchmarks/bench_lab.py                 # 3 cold + 3 warm boots of the default lab
    .venv/bin/python benchmarks/bench_lab.py --mode warm --boots 5 --workload "pytest suites -q"
    .venv/bin/python benchmarks/bench_lab.py --mode warm --qemu machine,newer   # L1 on QEMU 7.2 vs 10, same run

boot-to-ready = from starting QEMU until L1's libvirtd answers on the forwarded port from L0
(``libvirtd_s``); ``ready_s`` adds the wait for udev to settle and the device discovery that
``hostdev-lab up`` does before it returns. Cold = an empty cache dir each boot (kernel download and
unpack, initramfs build, accelerator probe and L1's QEMU capability probe all included; ``prepare_s``
is the part before QEMU starts). Warm = the normal cache dir, already populated by one unmeasured boot.
Peak RSS = ``VmHWM`` of the QEMU process read just before the lab stops (after ``--workload`` if given).
``--qemu`` overrides the spec's ``machine.qemu`` (auto, machine, newer); several, comma-separated, are
measured in turn (on a QEMU without igb the default lab boots without its igb: one device fewer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.lab.lab import start_lab  # noqa: E402
from harness.lab.paths import CACHE_ENV  # noqa: E402
from harness.lab.spec import LabSpec, load_spec  # noqa: E402


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_boot(spec: LabSpec, name: str, workload: str | None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    lab = start_lab(spec, name=name, log=lambda _message: None)
    try:
        total = time.monotonic() - started
        workload_rc = workload_s = None
        if workload:
            workload_started = time.monotonic()
            workload_rc, _ = lab.exec(workload, cwd=str(REPO), timeout=3600)
            workload_s = round(time.monotonic() - workload_started, 1)
        assert lab.pid is not None
        hwm = _vm_hwm_kib(lab.pid)
    finally:
        lab.stop()
    return {
        **lab.timings,
        "up_total_s": round(total, 2),
        "qemu_vmhwm_mib": round(hwm / 1024, 1),
        "workload_rc": workload_rc,
        "workload_s": workload_s,
        "loadavg_before": round(load_before, 2),
        "accel": lab.accel,
        "l1_qemu": lab.l1_qemu.get("version", "unknown"),
        "skipped_devices": lab.skipped_devices,
    }


def summarize(label: str, boots: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, float]:
        values = [boot[key] for boot in boots if key in boot]
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    summary: dict[str, Any] = {
        "mode": label,
        "boots": len(boots),
        "boot_to_libvirtd_s": stats("libvirtd_s"),
        "ready_s": stats("ready_s"),
        "prepare_s": stats("prepare_s"),
        "qemu_vmhwm_mib": stats("qemu_vmhwm_mib"),
    }
    print(
        f"{label}: boot-to-libvirtd median {summary['boot_to_libvirtd_s']['median']:.1f}s "
        f"(min {summary['boot_to_libvirtd_s']['min']:.1f}, max {summary['boot_to_libvirtd_s']['max']:.1f}); "
        f"ready median {summary['ready_s']['median']:.1f}s; prepare median {summary['prepare_s']['median']:.1f}s; "
        f"QEMU VmHWM max {summary['qemu_vmhwm_mib']['max']:.0f} MiB",
        flush=True,
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, default=REPO / "fixtures" / "labs" / "default.toml")
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--mode", choices=["cold", "warm", "both"], default="both")
    parser.add_argument("--workload", help="command run in L1 (cwd = repo) before reading the peak RSS")
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument(
        "--qemu", default="", help="machine.qemu override(s): auto, machine, newer (comma-separated)"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {"spec": str(args.spec), "cpus": os.cpu_count(), "runs": {}}
    spec = load_spec(args.spec)
    for choice in args.qemu.split(",") if args.qemu else [spec.machine.qemu]:
        chosen = dataclasses.replace(spec, machine=dataclasses.replace(spec.machine, qemu=choice))
        results["runs"][choice] = measure(chosen, args, label_prefix=f"{choice}/" if args.qemu else "")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def measure(spec: LabSpec, args: argparse.Namespace, label_prefix: str) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    name = f"bench-{os.getpid()}"
    if args.mode in ("cold", "both"):
        boots = []
        for index in range(args.boots):
            with tempfile.TemporaryDirectory(prefix="hostdev-lab-cold-") as empty_cache:
                previous = os.environ.get(CACHE_ENV)
                os.environ[CACHE_ENV] = empty_cache
                try:
                    boots.append(one_boot(spec, name, args.workload))
                finally:
                    if previous is None:
                        os.environ.pop(CACHE_ENV, None)
                    else:
                        os.environ[CACHE_ENV] = previous
            print(f"{label_prefix}cold boot {index + 1}: {json.dumps(boots[-1])}", flush=True)
        runs["cold"] = {"boots": boots, "summary": summarize(f"{label_prefix}cold", boots)}
    if args.mode in ("warm", "both"):
        one_boot(spec, name, None)  # populate the caches; not measured
        boots = []
        for index in range(args.boots):
            boots.append(one_boot(spec, name, args.workload))
            print(f"{label_prefix}warm boot {index + 1}: {json.dumps(boots[-1])}", flush=True)
        runs["warm"] = {"boots": boots, "summary": summarize(f"{label_prefix}warm", boots)}
    return runs


if __name__ == "__main__":
    sys.exit(main())
