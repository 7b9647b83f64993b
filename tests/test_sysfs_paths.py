"""One spelling of a PCI function's sysfs path: ``harness.host.sysfs.pci_path`` (and ``PCI_DEVICES``).

A module that writes ``/sys/bus/pci/devices/...`` itself spells a second one; this test names it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPELLING = "/sys/bus/pci/devices/"
ALLOWED = {
    "harness/host/sysfs.py": "the one place that spells it",
    # Shell text that runs inside a guest or the lab's L1, not a path read through a HostRoot.
    "harness/guest/protocol.py": "the answering guest's init script",
    "harness/lab/lab.py": "a command run inside L1",
}
# Issue 17: the change kinds move into harness/changes/ and harness/host/, and are typed there; the
# merger removes these once their spellings go (the test then checks they stay gone).
PENDING: set[str] = set()


def _spellers() -> list[str]:
    files = sorted(p for folder in ("harness", "suites") for p in (REPO / folder).rglob("*.py"))
    return [str(path.relative_to(REPO)) for path in files if SPELLING in path.read_text(encoding="utf-8")]


def test_only_the_sysfs_module_spells_a_pci_function_path() -> None:
    spellers = [name for name in _spellers() if name not in ALLOWED and name not in PENDING]
    assert not spellers, (
        f"{', '.join(spellers)} spell {SPELLING}<bdf> themselves: use harness.host.sysfs.pci_path(address, ...)"
    )


def test_the_pending_files_still_exist_or_are_dropped_from_the_list() -> None:
    missing = sorted(name for name in PENDING if not (REPO / name).exists())
    assert not missing, f"{', '.join(missing)} moved: take them off PENDING (their new home is scanned)"
