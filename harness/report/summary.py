"""The summary a person reads at the end of a run, in the ``Checking ...: PASS`` spirit of virt-host-validate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_MARK = {"PASS": "PASS", "WARN": "WARN", "FAIL": "FAIL"}


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header).rstrip(), line.format(*("-" * w for w in widths)).rstrip()] + [
        line.format(*row).rstrip() for row in rows
    ]


def render_summary(report: Mapping[str, Any]) -> str:
    """summary.txt, rendered from the run's one model: the report.json document (``build_report``)."""
    host_properties: Mapping[str, str] = report["host"]
    checks: Sequence[Mapping[str, Any]] = report["checks"]
    devices: Sequence[Mapping[str, Any]] = report["devices"]
    lines = [
        f"hostdev-harness: {host_properties.get('hostname', '?')} ({host_properties.get('kernel', '?')})"
    ]
    if banner := snapshot_banner(host_properties):
        lines.append(banner)
    if host_properties.get("virtual_machine"):
        lines.append(f"Note: {host_properties['virtual_machine']}")
    if checks:
        lines.append("")
        lines.append("Preparation checks")
        for check in checks:
            title = check["title"] or check["name"]
            lines.append(f"{title:.<72}: {_MARK.get(check['verdict'], '?')}")
            if check["verdict"] != "PASS":
                lines.append(f"    {check['summary']}")
                if check["hint"]:
                    lines.append(f"    hint: {check['hint']}")
    if devices:
        lines.append("")
        lines.append("PCI devices")
        rows = [
            (
                d["address"],
                d["nodedev"],
                d["driver"] or "",
                "none" if d["iommu_group"] is None else str(d["iommu_group"]),
                d["sriov"],
                d["assignable"],
                d["reasons"],
            )
            for d in devices  # sorted by address in the model
        ]
        lines += _table(rows, ("address", "libvirt name", "driver", "group", "SR-IOV", "verdict", "why"))
    lines.append("")
    lines.append(f"Run {report.get('run_id', '?')} at {report.get('generated_at', '?')}")
    if report.get("not_run"):
        lines.append(f"Not run: {', '.join(report['not_run'])}")
    lines.append(verdict_line(report))
    return "\n".join(lines) + "\n"


def snapshot_banner(host_properties: Mapping[str, str]) -> str | None:
    """One line saying the run read a snapshot, not a live host, and when and by what it was captured."""
    if "snapshot_captured_at" not in host_properties:
        return None
    return (
        f"SNAPSHOT: read from a snapshot captured {host_properties['snapshot_captured_at']} by "
        f"{host_properties.get('snapshot_captured_by', 'an unknown version')}, not a live host"
    )


def check_counts(verdicts: Iterable[str]) -> str:
    """``8 checks: 7 PASS, 1 FAIL``: how many checks ran and how each came out."""
    counted = Counter(verdicts)
    parts = [f"{counted[v]} {v}" for v in ("PASS", "WARN", "FAIL") if counted[v]]
    total = sum(counted.values())
    return f"{total} check{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def device_counts(assignable: Iterable[str]) -> str:
    """``6 devices: 1 assignable, 2 host-critical, 3 not assignable``."""
    counted = Counter(assignable)
    total = sum(counted.values())
    parts = [f"{n} {verdict}" for verdict, n in sorted(counted.items())]
    return f"{total} device{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def verdict_line(report: Mapping[str, Any]) -> str:
    """The last line of summary.txt: the overall verdict, why, and the counts behind it."""
    checks = check_counts(c["verdict"] for c in report["checks"])
    devices = device_counts(d["assignable"] for d in report["devices"])
    return f"Overall verdict: {report['verdict']} ({report['verdict_reason']}); {checks}; {devices}"
