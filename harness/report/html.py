"""The certification report a person reads: one self-contained HTML file rendered from ``report.json``.

Readiness verdict first, then each check with its evidence and hint, the device matrix, cycle and
scenario results with timings and properties, the commands that reproduce a failure, and the
environment. No scripts, no external resources: it opens from a mail attachment or a CI artifact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from harness.report.summary import check_counts, device_counts, snapshot_banner

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2630;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d5dbe1}
.verdict{border-radius:10px;padding:20px 24px;color:#fff;margin-bottom:8px}
.verdict .word{font-size:40px;font-weight:800;letter-spacing:.04em}
.PASS{background:#1e7d32}.WARN{background:#b26a00}.FAIL{background:#b3261e}
.INCOMPLETE,.INTERRUPTED{background:#5f6368}
.badge{display:inline-block;min-width:46px;text-align:center;border-radius:4px;color:#fff;font-weight:700;
 font-size:12px;padding:2px 6px}
.passed{background:#1e7d32}.failed,.error{background:#b3261e}.skipped{background:#6b7785}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #d5dbe1;padding:5px 7px;text-align:left;vertical-align:top}
th{background:#eef1f4} ul{margin:4px 0 0 18px;padding:0} .hint{color:#0b4f8a}
pre{background:#10181f;color:#e6edf3;padding:10px;border-radius:6px;overflow-x:auto;white-space:pre-wrap}
.muted{color:#5c6773} details summary{cursor:pointer}
"""


def badge(word: str | None) -> str:
    word = word or "-"
    return f'<span class="badge {escape(word)}">{escape(word)}</span>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def checks_table(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return '<p class="muted">No preparation checks ran.</p>'
    rows = []
    for check in checks:
        evidence = "".join(f"<li>{escape(item)}</li>" for item in check["evidence"])
        hint = f'<div class="hint">hint: {escape(check["hint"])}</div>' if check.get("hint") else ""
        rows.append(
            (
                escape(check["title"] or check["name"]),
                badge(check["verdict"]),
                escape(check["summary"]) + (f"<ul>{evidence}</ul>" if evidence else "") + hint,
            )
        )
    return _table(("check", "verdict", "summary, evidence and hint"), rows)


def devices_table(devices: Sequence[Mapping[str, Any]]) -> str:
    if not devices:
        return '<p class="muted">No device inventory in this run.</p>'
    rows = [
        (
            f"<code>{escape(d['address'])}</code>",
            escape(d["nodedev"]),
            escape(d.get("description", "")),
            escape(d["driver"] or "none"),
            escape("none" if d["iommu_group"] is None else str(d["iommu_group"])),
            escape(" ".join(d["group_members"])),
            escape(d["sriov"]),
            escape(d["assignable"]),
            escape(d["reasons"]),
            escape(d["libvirt_view"]),
        )
        for d in devices
    ]
    header = ("address", "libvirt name", "device", "driver", "group", "group members", "SR-IOV",
              "assignable", "why", "libvirt view")  # fmt: skip
    return _table(header, rows)


def _scenarios(tests: Sequence[Mapping[str, Any]], skip: set[str]) -> str:
    chosen = [t for t in tests if t["nodeid"] not in skip]
    if not chosen:
        return '<p class="muted">No cycles or scenarios ran.</p>'
    rows = []
    for test in chosen:
        properties = "".join(
            f"<li><code>{escape(name)}</code> = {escape(value)}</li>"
            for name, value in test["properties"].items()
            if name.startswith("harness.")
        )
        message = (
            f"<details><summary>message</summary><pre>{escape(test['message'])}</pre></details>"
            if test.get("message")
            else ""
        )
        rows.append(
            (
                f"<code>{escape(test['nodeid'])}</code>",
                badge(test["outcome"]),
                f"{test['duration_s']:.2f} s",
                (f"<ul>{properties}</ul>" if properties else "") + message,
            )
        )
    return _table(("test", "outcome", "time", "harness.* properties"), rows)


def _reproducers(tests: Sequence[Mapping[str, Any]]) -> str:
    lines = [command for test in tests for command in test["reproduce"]]
    if not lines:
        return '<p class="muted">Nothing failed: nothing to reproduce.</p>'
    return "<pre>" + escape("\n".join(lines)) + "</pre>"


def _environment(report: Mapping[str, Any]) -> str:
    environment = dict(report["environment"])
    environment["command"] = " ".join(environment["command"])
    rows = [(escape(f"host {k}"), escape(str(v))) for k, v in report["host"].items()]
    rows += [(escape(k), escape(str(v))) for k, v in environment.items()]
    return _table(("what", "value"), rows)


def _snapshot(host: Mapping[str, str]) -> str:
    banner = snapshot_banner(host)
    return f'\n<div id="snapshot-banner"><b>{escape(banner)}</b></div>' if banner else ""


def _skipped(tests: Sequence[Mapping[str, Any]]) -> str:
    """Skipped tests grouped by reason, in the page itself (a skip is never a pass, so it is not hidden)."""
    groups: dict[str, list[str]] = {}
    for test in tests:
        if test["outcome"] == "skipped":
            groups.setdefault(str(test["message"] or "no reason given"), []).append(test["nodeid"])
    if not groups:
        return "<p>none</p>"
    items = "".join(
        f"<li><b>{escape(reason)}</b> ({len(ids)}): {escape(', '.join(ids))}</li>"
        for reason, ids in groups.items()
    )
    return f'<ul id="skipped-by-reason">{items}</ul>'


def _not_run(report: Mapping[str, Any]) -> str:
    missing = report.get("not_run") or []
    if not missing:
        return ""
    return f'\n<div id="not-run">not run: {escape(", ".join(missing))}</div>'


def render_html(report: Mapping[str, Any]) -> str:
    host = report["host"]
    checks = report["checks"]
    devices = report["devices"]
    counts = report["counts"]
    skip = {c["nodeid"] for c in checks} | {d["nodeid"] for d in devices}
    title = f"hostdev-harness: {host.get('hostname', 'unknown host')} is {report['verdict']}"
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body><main>
<section id="verdict" class="verdict {escape(report["verdict"])}">
<div>PCI device assignment readiness of <b>{escape(host.get("hostname", "unknown host"))}</b></div>
<div class="word" id="verdict-word">{escape(report["verdict"])}</div>
<div>{escape(report["verdict_reason"])}</div>
<div id="counts">{escape(check_counts(c["verdict"] for c in checks))};
{escape(device_counts(d["assignable"] for d in devices))}</div>{_not_run(report)}{_snapshot(host)}
</section>
<p class="muted">kernel {escape(host.get("kernel", "?"))} · libvirt {escape(host.get("libvirt", "?"))} ·
QEMU {escape(host.get("qemu", "?"))} · {escape(summary)} · run {escape(str(report.get("run_id", "?")))} · generated {escape(report["generated_at"])}
by hostdev-harness {escape(report["environment"]["harness"])} (report format {report["version"]})</p>
<h2 id="checks">Preparation checks</h2>{checks_table(checks)}
<h2 id="devices">PCI devices</h2>{devices_table(devices)}
<h2 id="skipped">Skipped, by reason</h2>{_skipped(report["tests"])}
<h2 id="scenarios">Cycles and scenarios</h2>{_scenarios(report["tests"], skip)}
<h2 id="reproduce">Reproduce</h2>{_reproducers(report["tests"])}
<h2 id="environment">Environment</h2>{_environment(report)}
</main></body></html>
"""
