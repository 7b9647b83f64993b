"""Several hosts' runs merged into one fleet report, each labelled with its host.

Input: ``report.json`` files (or folders holding them, such as a ``tmt run`` workdir, where each host's
test data holds one). Output: ``fleet.json`` (``hostdev-harness-fleet-report`` version 1: the worst
verdict and one entry per host with its whole report) and ``fleet.html`` (an overview row per host,
then each host's checks and devices).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.host.root import NotARegularFileError, read_regular_file
from harness.report.html import STYLE, badge, checks_table, devices_table
from harness.report.run_report import REPORT_FORMAT, REPORT_VERSION

FLEET_FORMAT = "hostdev-harness-fleet-report"
FLEET_VERSION = 1
_SEVERITY = {"PASS": 0, "WARN": 1, "FAIL": 2}


def find_reports(inputs: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(path.rglob("report.json"))
        elif path.exists():  # a FIFO or device too: _load refuses it with its reason
            found.append(path)
        else:
            raise HarnessInputError(f"{path} does not exist; give report.json files or folders holding them")
    if not found:
        raise HarnessInputError("no report.json found in the given paths; run the suites first")
    return found


def _load(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(read_regular_file(path).decode())
    except NotARegularFileError as exc:
        raise HarnessInputError(f"{path}: {exc.problem}; give report.json files") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessInputError(f"{path}: not a readable report.json ({exc})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise HarnessInputError(f"{path}: not a {REPORT_FORMAT} document")
    # What merging and the fleet page read: checked here, so a hand-edited report is one line, not exit 3.
    for key, kind in (
        ("host", dict),
        ("verdict", str),
        ("verdict_reason", str),
        ("checks", list),
        ("devices", list),
    ):
        if not isinstance(report.get(key), kind):
            raise HarnessInputError(
                f"{path}: {key!r} is missing or not a JSON {kind.__name__ if kind is not dict else 'object'}; "
                "give a report.json the suites wrote"
            )
    if report.get("version") != REPORT_VERSION:
        raise HarnessInputError(
            f"{path}: report version {report.get('version')!r}; this harness merges version {REPORT_VERSION}"
        )
    return report


def merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = []
    labels: set[str] = set()
    for path in paths:
        report = _load(path)
        label = str(report["host"].get("hostname") or path.parent.name)
        if label in labels:  # two runs of one host (or hosts sharing a name): tell them apart by folder
            label = f"{label} ({path.parent.name})"
        labels.add(label)
        hosts.append(
            {
                "label": label,
                "verdict": report["verdict"],
                "verdict_reason": report["verdict_reason"],
                "source": str(path),
                "report": report,
            }
        )
    worst = max((h["verdict"] for h in hosts), key=lambda v: _SEVERITY.get(v, 2))
    return {"format": FLEET_FORMAT, "version": FLEET_VERSION, "verdict": worst, "hosts": hosts}


def render_fleet_html(fleet: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><a href='#host-{index}'>{escape(h['label'])}</a></td><td>{badge(h['verdict'])}</td>"
        f"<td>{escape(h['verdict_reason'])}</td><td>{escape(h['report']['host'].get('kernel', '?'))}</td></tr>"
        for index, h in enumerate(fleet["hosts"])
    )
    sections = "".join(
        f"<h2 id='host-{index}'>{escape(h['label'])} {badge(h['verdict'])}</h2>"
        f"{checks_table(h['report']['checks'])}{devices_table(h['report']['devices'])}"
        for index, h in enumerate(fleet["hosts"])
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hostdev-harness fleet: {escape(fleet["verdict"])}</title>
<style>{STYLE}</style></head><body><main>
<section id="verdict" class="verdict {escape(fleet["verdict"])}"><div>PCI device assignment readiness of
{len(fleet["hosts"])} host(s)</div><div class="word" id="verdict-word">{escape(fleet["verdict"])}</div></section>
<table><thead><tr><th>host</th><th>verdict</th><th>why</th><th>kernel</th></tr></thead><tbody>{rows}</tbody></table>
{sections}</main></body></html>
"""


def write_fleet_report(inputs: Iterable[str | Path], destination: Path) -> dict[str, Any]:
    fleet = merge_reports(find_reports(inputs))
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "fleet.json").write_text(json.dumps(fleet, indent=2) + "\n")
    (destination / "fleet.html").write_text(render_fleet_html(fleet))
    return fleet
