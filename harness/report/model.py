"""The run's one model: the host identity, check entries and device entries every report renders.

``report.json`` (``run_report.build_report``) is built from these entries; summary.txt renders that
document, and ``hostdev-harness check --json`` / ``inventory --json`` are renderers of the same entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.checks.result import CheckResult, Verdict
from harness.host.backends import read_manifest
from harness.host.host import Host
from harness.host.root import HostRoot
from harness.inventory import DeviceAssessment
from harness.report.properties import CHECK, DEVICE, HOST_PREFIX, device_properties
from harness.report.summary import check_counts

CHECK_FORMAT = "hostdev-harness-check"
CHECK_VERSION = 1

_DMI = {
    "system_vendor": "/sys/class/dmi/id/sys_vendor",
    "system_model": "/sys/class/dmi/id/product_name",
    "bios": "/sys/class/dmi/id/bios_version",
}


def _os_release(root: HostRoot) -> str:
    """The distribution of the host under test (os-release's PRETTY_NAME), or "not captured"."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        for line in (root.read_text(path) or "").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip("'\"") or "not captured"
    return "not captured"


def host_properties(snapshot: str | None = None) -> dict[str, str]:
    """Identity of the host under test, read through the same ``HostRoot`` the checks read: the snapshot
    when the run reads one (never the machine pytest runs on), else this machine."""
    root = HostRoot(snapshot or "/")
    properties = {
        "hostname": root.read_stripped("/proc/sys/kernel/hostname") or "unknown",
        "kernel": root.read_stripped("/proc/sys/kernel/osrelease") or "",
        "cmdline": root.read_stripped("/proc/cmdline") or "",
    }
    properties["os"] = _os_release(root)
    cpuinfo = root.read_text("/proc/cpuinfo") or ""
    models = [
        line.partition(":")[2].strip() for line in cpuinfo.splitlines() if line.startswith("model name")
    ]
    properties["cpu"] = models[0] if models else "not captured"
    for name, path in _DMI.items():
        properties[name] = root.read_stripped(path) or "not captured"
    if snapshot:
        manifest = read_manifest(snapshot)
        properties["snapshot_captured_at"] = str(manifest.get("captured_at") or "not recorded")
        properties["snapshot_captured_by"] = str(manifest.get("captured_by") or "not recorded")
    return properties


def opened_host(host: Host, *, libvirt: bool) -> dict[str, str]:
    """What the opened host says of itself (the preparation suite records it as ``harness.host.*``
    properties; ``check --json`` reads the same). ``libvirt``: also libvirt's versions and URI, when it
    answered."""
    identity = {"hostname": host.name, "kernel": host.kernel.release, "cmdline": host.kernel.cmdline_text}
    if host.virtual_machine is not None:  # the summary says it once; each check's evidence says more
        identity["virtual_machine"] = host.virtual_machine.summary()
    if libvirt and host.libvirt.reachable:
        identity["libvirt"] = str(host.libvirt.library_version)
        identity["qemu"] = str(host.libvirt.hypervisor_version)
        identity["libvirt_uri"] = str(host.libvirt.uri)
    return identity


def opened_host_properties(host: Host, *, libvirt: bool) -> list[tuple[str, str]]:
    """``opened_host`` as the ``harness.host.*`` properties a test records."""
    return [(HOST_PREFIX + name, value) for name, value in opened_host(host, libvirt=libvirt).items()]


def host_block(snapshot: str | None, *found: Mapping[str, str]) -> dict[str, str]:
    """report.json's ``host``: the identity read from the host's files, then what the run found (the opened
    host's own properties, other plugins'), later ones winning."""
    block = host_properties(snapshot)
    for properties in found:
        block.update(properties)
    return block


def merged(properties: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Properties of one test by name, every value of a repeated name (evidence) kept in order."""
    by_name: dict[str, list[str]] = {}
    for name, value in properties:
        by_name.setdefault(name, []).append(value)
    return by_name


def one(by_name: Mapping[str, list[str]], name: str) -> str | None:
    values = by_name.get(name)
    return values[-1] if values else None


def check_entry(by_name: Mapping[str, list[str]], *, failed: bool = False) -> dict[str, Any]:
    """One check as report.json holds it (without its test's nodeid), from the check's properties."""
    return {
        "name": one(by_name, CHECK) or "",
        "title": one(by_name, "harness.title") or "",
        "verdict": one(by_name, "harness.verdict") or ("FAIL" if failed else "PASS"),
        "summary": one(by_name, "harness.summary") or "",
        "evidence": by_name.get("harness.evidence", []),
        "hint": one(by_name, "harness.hint"),
    }


def device_entry(by_name: Mapping[str, list[str]]) -> dict[str, Any]:
    """One device as report.json holds it (without libvirt's view and its test's nodeid)."""
    group = one(by_name, "harness.iommu_group")
    return {
        "address": one(by_name, DEVICE) or "",
        "nodedev": one(by_name, "harness.nodedev") or "",
        "description": one(by_name, "harness.description") or "",
        "driver": one(by_name, "harness.driver"),
        "iommu_group": int(group) if group and group.isdigit() else None,
        "group_members": (one(by_name, "harness.group_members") or "").split(),
        "sriov": one(by_name, "harness.sriov") or "",
        "assignable": one(by_name, "harness.assignable") or "",
        "reasons": one(by_name, "harness.reasons") or "",
    }


def overall(verdicts: Iterable[str]) -> str:
    """FAIL > WARN > PASS over the checks that ran."""
    found = set(verdicts)
    return next((str(v) for v in (Verdict.FAIL, Verdict.WARN) if v in found), str(Verdict.PASS))


def check_document(
    host: Mapping[str, str], results: Sequence[CheckResult], expected: Sequence[str]
) -> dict[str, Any]:
    """``hostdev-harness check --json``: the host block, verdict, counts, each check and those not run."""
    listed = [result.to_dict() for result in results]
    ran = {result.name for result in results}
    return {
        "format": CHECK_FORMAT,
        "version": CHECK_VERSION,
        "host": dict(host),
        "verdict": overall(c["verdict"] for c in listed),
        "counts": check_counts(c["verdict"] for c in listed),
        "checks": listed,
        "not_run": [name for name in expected if name not in ran],
    }


def inventory_rows(assessments: Iterable[DeviceAssessment]) -> list[dict[str, Any]]:
    """``hostdev-harness inventory --json``: report.json's device entry of each device, then what only the
    inventory shows. ``driver`` is null for an unbound device and ``reasons`` a list here, where report.json
    spells them ``"none"`` and one sentence; ``verdict`` is report.json's ``assignable``."""
    rows = []
    for a in assessments:
        row = device_entry(merged(device_properties(a)))
        row.update(
            driver=a.device.driver,
            sriov_totalvfs=a.device.sriov_totalvfs,
            sriov_numvfs=a.device.sriov_numvfs,
            physfn=None if a.device.physfn is None else str(a.device.physfn),
            virtfns=list(map(str, a.device.virtfns)),
            verdict=a.verdict,
            reasons=a.reasons,
            acs_path=a.acs_path,
            group_reason=a.group_reason,
        )
        rows.append(row)
    return rows
