"""JUnit for CI: a WARN shows in the file, and a copy that validates against Jenkins' published schema.

pytest's ``junit.xml`` (xunit1) keeps the per-testcase ``harness.*`` properties that GitLab and the
project's tests read; a WARN there gets a ``<system-out>`` line too, and the suite a ``harness.verdict``
and ``harness.warnings`` property. ``junit-jenkins.xml`` is the same run in the shape of the xunit plugin's
``junit-10.xsd`` (tests/fixtures/junit-10.xsd), which has no per-testcase properties: they become
``<system-out>`` lines. ``--harness-strict`` turns a WARN into a failure in both.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

JENKINS_JUNIT = "junit-jenkins.xml"


def _properties(testcase: etree._Element) -> list[tuple[str, str]]:
    return [(p.get("name", ""), p.get("value", "")) for p in testcase.iterfind("properties/property")]


def _append_system_out(testcase: etree._Element, text: str) -> None:
    out = testcase.find("system-out")
    if out is None:
        out = etree.SubElement(testcase, "system-out")
        out.text = text
    else:
        out.text = f"{text}\n{out.text or ''}"


def warning_line(properties: list[tuple[str, str]]) -> str | None:
    values = dict(properties)
    if values.get("harness.verdict") != "WARN":
        return None
    line = f"hostdev-harness WARN: {values.get('harness.title', '')}: {values.get('harness.summary', '')}"
    if values.get("harness.hint"):
        line += f"\nhint: {values['harness.hint']}"
    return line


def mark_warnings(junit_path: Path) -> int:
    """Give every WARN testcase a ``<system-out>`` line; returns how many there were."""
    tree = etree.parse(str(junit_path))
    count = 0
    for testcase in tree.iter("testcase"):
        line = warning_line(_properties(testcase))
        if line is not None:
            _append_system_out(testcase, line)
            count += 1
    tree.write(str(junit_path), encoding="utf-8", xml_declaration=True)
    return count


def write_jenkins_junit(junit_path: Path, destination: Path) -> Path:
    """``junit_path`` reshaped for junit-10.xsd: testcase properties folded into ``<system-out>``."""
    tree = etree.parse(str(junit_path))
    for testcase in tree.iter("testcase"):
        # pytest leaves the testcase it was in when interrupted without a name; junit-10.xsd requires one.
        if not testcase.get("name"):
            testcase.set("name", f"{testcase.get('classname') or 'run'} (interrupted before it was named)")
        properties = _properties(testcase)
        for element in testcase.findall("properties"):
            testcase.remove(element)
        if properties:
            details = "\n".join(f"{name}: {value}" for name, value in properties)
            out = testcase.find("system-out")
            if out is None:
                etree.SubElement(testcase, "system-out").text = details
            else:  # a WARN's line (mark_warnings) or captured output comes first
                out.text = f"{out.text or ''}\n{details}"
    tree.write(str(destination), encoding="utf-8", xml_declaration=True)
    return destination
