"""Every path the readers read through ``HostRoot`` is one ``hostdev-harness snapshot`` captures.

A reader that starts reading a file the snapshot does not capture reads "missing" below a snapshot and
can give another verdict than on the live host, silently. This runs the checks and the inventory over
every host fixture with a recording ``HostRoot`` and holds each path read to the snapshot's capture
list (``CAPTURED_FILES`` and ``CAPTURED_WALKED`` in harness/host/snapshot.py), or to ``_NOT_CAPTURED``
below, where each path left out says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Any

import pytest

from harness.checks.preparation import run_all
from harness.host.host import Host
from harness.host.root import HostRoot
from harness.host.snapshot import CAPTURED_FILES, CAPTURED_WALKED
from harness.inventory import assess_all
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES

# HostRoot's methods that read the host: recorded with the path they were given. A file read must be
# captured; a folder listed, a path tested or a link followed may also lead to what is captured.
_READS_FILE = (
    "read_text",
    "read_bytes",
    "read_stripped",
    "read_number",
    "read_hex",
    "read_json",
    "link_name",
)
_READS_WAY = ("exists", "listdir", "realpath")
# HostRoot's public names that read nothing (a new reading method must be added above).
_READS_NOTHING = ("error", "host_path", "is_live", "path", "resolve")

# Paths the readers read that the snapshot deliberately does not capture (globs relative to /).
_NOT_CAPTURED = (
    # ProcessLimits reads the uid of each process it reads; only a daemon's uid is used, never the
    # harness's own (its limits, proc/self/limits, are captured).
    "proc/self/status",
    # find_daemons skips a daemon in another mount namespace; the capture ran that filter on the live
    # host and keeps only the daemons it kept, so below a snapshot there is nothing left to filter.
    "proc/*/ns/mnt",
    # A mount's source device node (/dev/vda): a snapshot holds no /dev, and the reader takes the name
    # after /dev/ instead (harness/host/critical.py). Known gap: a /dev/mapper or /dev/disk/by-* link
    # is not resolved below a snapshot.
    "dev/*",
    "dev/*/*",
    # Known gap: the devices a dm/md device or a partition is built on (their slaves) are not captured,
    # so below a snapshot a root filesystem on LVM does not mark the PCI disk behind it.
    "sys/class/block/*/slaves",
)

FIXTURE_ROOTS = sorted(path for path in FIXTURES.iterdir() if (path / ".harness/manifest.json").is_file())


def _matches(path: list[str], pattern: list[str], *, way: bool) -> bool:
    """``path`` matches the glob ``pattern`` folder by folder; with ``way``, a folder leading to it does."""
    if not pattern:
        return not path
    if not path:
        return way
    if pattern[0] == "**":
        return any(_matches(path[skip:], pattern[1:], way=way) for skip in range(len(path) + 1))
    return fnmatchcase(path[0], pattern[0]) and _matches(path[1:], pattern[1:], way=way)


def _covered(host_path: str, patterns: tuple[str, ...], *, way: bool) -> bool:
    parts = [part for part in host_path.split("/") if part]
    return any(_matches(parts, pattern.split("/"), way=way) for pattern in patterns)


def _recording(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Make every HostRoot note the paths it reads: host path -> the methods that read it."""
    read: dict[str, set[str]] = {}

    def recorded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: HostRoot, host_path: str, *args: Any, **kwargs: Any) -> Any:
            read.setdefault(host_path, set()).add(name)
            return original(self, host_path, *args, **kwargs)

        return method

    for name in (*_READS_FILE, *_READS_WAY):
        monkeypatch.setattr(HostRoot, name, recorded(name, getattr(HostRoot, name)))
    return read


def _touch_everything(host: Host) -> Iterator[object]:
    """All checks, the inventory, and every property of the host model."""
    yield from run_all(host)
    yield from assess_all(host)
    for name in dir(Host):
        if isinstance(getattr(Host, name), property):
            yield getattr(host, name)


def test_every_reading_method_of_host_root_is_recorded() -> None:
    public = {name for name in dir(HostRoot) if not name.startswith("_")}
    public |= set(vars(HostRoot("/")))
    assert public == {*_READS_FILE, *_READS_WAY, *_READS_NOTHING}, (
        "HostRoot's methods changed: sort the new ones into _READS_FILE, _READS_WAY or _READS_NOTHING"
    )


def test_snapshot_captures_what_the_readers_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert FIXTURE_ROOTS, f"no host fixtures in {FIXTURES}"
    read = _recording(monkeypatch)
    for root in FIXTURE_ROOTS:
        with open_host(root) as host:
            list(_touch_everything(host))
    captured = (*CAPTURED_FILES, *CAPTURED_WALKED)
    uncaptured = sorted(
        host_path
        for host_path, methods in read.items()
        if not _covered(host_path, _NOT_CAPTURED, way=False)
        and not _covered(host_path, captured, way=not methods.intersection(_READS_FILE))
    )
    assert not uncaptured, (
        "the readers read paths a snapshot does not capture (a snapshot run would read them as missing): "
        f"{uncaptured}; add them to CAPTURED_FILES (harness/host/snapshot.py) or, with the reason, to "
        "_NOT_CAPTURED here"
    )


@pytest.mark.parametrize(
    ("host_path", "way", "expected"),
    [
        ("/sys/bus/pci/devices/0000:00:01.0/vendor", False, True),
        ("/sys/bus/pci/devices/0000:00:01.0/power/control", False, False),
        ("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/virtfn3", False, True),
        ("/sys/class/iommu/dmar0/intel-iommu", True, True),
        ("/sys/class/iommu/dmar0/intel-iommu", False, False),
        ("/etc/modprobe.d/vfio.conf", False, True),
        ("/etc/modprobe.d/vfio.txt", False, False),
    ],
)
def test_capture_patterns_match_folder_by_folder(host_path: str, way: bool, expected: bool) -> None:
    assert _covered(host_path, (*CAPTURED_FILES, *CAPTURED_WALKED), way=way) is expected
