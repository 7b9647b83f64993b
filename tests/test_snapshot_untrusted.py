"""A snapshot is untrusted input: every file the readers read, corrupted, gives one line naming it.

The files are not a hand-kept list: a clean run of ``check`` and ``inventory`` on each fixture records
every read through ``HostRoot`` (and which reads expect a structured value: a number, a link, JSON, a
configuration space). Each recorded file is then replaced by garbage, emptied, made a link out of the
snapshot, a directory or a FIFO, and the command must end with exit 2 and one line naming the file, or
(for free text, where garbage is still text) read it without exit 3; never a traceback, never a hang.
The cases run in-process through ``main``; a watchdog alarm turns a hang into a failure, and the
issue's FIFO cases also run as subprocesses with a timeout.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from harness import cli as harness_cli
from harness.errors import EXIT_USAGE, HostFileError
from harness.host import pci as harness_pci
from harness.host.root import MAX_SNAPSHOT_FILE_BYTES, HostRoot, NotARegularFileError, read_regular_file
from harness.opening import open_host
from tests.synthetic_hosts import FIXTURES
from tests.test_cli_bad_input import assert_one_clear_line, run

# An Intel host that is itself a VM (ecap, cap, virtio devices are read), one with configuration spaces.
SNAPSHOTS = ("synthetic-nested-qemu", "synthetic-isolation")
COMMANDS = ("check", "inventory")
CORRUPTIONS = ("garbage", "empty", "link-outside", "directory", "fifo")
HANG_BOUND_S = 20.0  # one in-process case takes well under a second
GARBAGE = b"\xff\x00garbage {[ 0xZZ \xc3\x28\n"


@dataclass(frozen=True)
class Reads:
    every: frozenset[str]  # host paths read (files and links) that exist in the snapshot
    structured: frozenset[str]  # of those, the ones read as a number, a link, JSON or a config space


@cache
def recorded_reads(snapshot: str, command: str) -> Reads:
    """What ``command --snapshot`` reads of a clean fixture: recorded, so the list cannot drift."""
    every: set[str] = set()
    structured: set[str] = set()

    def recording(method: Callable[..., Any], into: tuple[set[str], ...]) -> Callable[..., Any]:
        def wrapper(self: HostRoot, host_path: str, *args: Any, **kwargs: Any) -> Any:
            value = method(self, host_path, *args, **kwargs)
            if value is not None and not self.is_live:
                for target in into:
                    target.add(host_path)
            return value

        return wrapper

    def config(root: HostRoot, path: str) -> object:
        value = original_config(root, path)
        if not root.is_live and root.exists(path):
            structured.add(path)
        return value

    original_config = harness_pci._config
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(HostRoot, "_read", recording(HostRoot._read, (every,))))
        for name in ("read_number", "read_json", "link_name"):
            stack.enter_context(
                mock.patch.object(HostRoot, name, recording(getattr(HostRoot, name), (every, structured)))
            )
        stack.enter_context(mock.patch.object(harness_pci, "_config", config))
        code, _out, err = run_main(command, "--snapshot", FIXTURES / snapshot)
    assert code in (0, 1), f"{command} on the clean fixture {snapshot}: exit {code}, expected 0 or 1: {err}"
    return Reads(frozenset(every), frozenset(structured))


@contextlib.contextmanager
def watchdog(what: str) -> Iterator[None]:
    """Turns a hang (a FIFO opened for reading waits for a writer) into a failure naming the case."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what}: still running after {HANG_BOUND_S} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_BOUND_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_main(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"HARNESS_PROGRESS": "off"}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        watchdog(" ".join(map(str, argv))),
    ):
        code = harness_cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def corrupt(snapshot: Path, host_path: str, corruption: str) -> None:
    target = snapshot / host_path.lstrip("/")
    if target.is_symlink() or not target.is_dir():
        target.unlink()
    else:
        shutil.rmtree(target)
    if corruption == "garbage":
        target.write_bytes(GARBAGE)
    elif corruption == "empty":
        target.write_bytes(b"")
    elif corruption == "link-outside":
        target.symlink_to("/etc/hostname")  # the issue's case: this machine's name in the output
    elif corruption == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)


def copy_snapshot(name: str, into: Path) -> Path:
    copy = into / name
    shutil.copytree(FIXTURES / name, copy, symlinks=True)
    return copy


def cases() -> list[Any]:
    """(snapshot, command, file, corruption): each file with the command that reads it (check first)."""
    found = []
    for snapshot in SNAPSHOTS:
        seen: set[str] = set()
        for command in COMMANDS:
            for path in sorted(recorded_reads(snapshot, command).every - seen):
                seen.add(path)
                for corruption in CORRUPTIONS:
                    found.append(
                        pytest.param(
                            snapshot,
                            command,
                            path,
                            corruption,
                            id=f"{snapshot}-{command}-{path}-{corruption}",
                        )
                    )
    return found


@pytest.mark.parametrize(("snapshot", "command", "host_path", "corruption"), cases())
def test_every_file_read_corrupted_is_one_line_naming_it(
    tmp_path: Path, snapshot: str, command: str, host_path: str, corruption: str
) -> None:
    copy = copy_snapshot(snapshot, tmp_path)
    corrupt(copy, host_path, corruption)
    code, out, err = run_main(command, "--snapshot", copy)
    where = f"{command} --snapshot {copy} with {host_path} made {corruption}"
    assert "Traceback" not in err + out and "internal error" not in err, f"{where}: internals shown:\n{err}"
    reads = recorded_reads(snapshot, command)
    must_refuse = corruption not in ("garbage", "empty") or host_path in reads.structured
    if must_refuse or code == EXIT_USAGE:
        assert code == EXIT_USAGE, f"{where}: exit {code}, expected {EXIT_USAGE}; stderr: {err!r}"
        assert_one_clear_line(err, "hostdev-harness", host_path.lstrip("/"))
    else:  # free text: garbage is still text the readers may take; never exit 3
        assert code in (0, 1), f"{where}: exit {code}, expected 0 or 1 (free text read as text): {err!r}"


def test_the_recorded_reads_cover_every_kind_of_reader() -> None:
    """The generator above is only as good as the recording: it must see sysfs attributes, links, the
    configuration space, the JSON the harness wrote, /proc and /etc (else a reader escaped HostRoot)."""
    check, inventory = (recorded_reads("synthetic-isolation", command) for command in COMMANDS)
    every, structured = check.every | inventory.every, check.structured | inventory.structured
    for expected in ("/proc/cmdline", "/etc/default/grub", "/.harness/libvirt.json", "/.harness/probes.json"):
        assert expected in every, f"expected {expected} among the recorded reads, found: {sorted(every)}"
    for suffix in ("/class", "/vendor", "/config", "/iommu_group", "/driver", "intel-iommu/ecap"):
        assert any(p.endswith(suffix) for p in structured), (
            f"no structured read ending {suffix}: {structured}"
        )


def test_a_link_out_of_the_snapshot_never_reads_this_machine(tmp_path: Path) -> None:
    """The issue's case: the hostname a report names was this machine's /etc/hostname."""
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    corrupt(copy, "/proc/sys/kernel/hostname", "link-outside")
    with pytest.raises(HostFileError) as caught, open_host(copy) as host:
        _ = host.name
    assert caught.value.path == "proc/sys/kernel/hostname" and "outside the snapshot" in str(caught.value)


def test_links_that_stay_inside_the_snapshot_are_followed(tmp_path: Path) -> None:
    """sysfs is made of links: a device's, its driver's and its group's stay readable."""
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    root = HostRoot(copy)
    devices = root.listdir("/sys/bus/pci/devices")
    assert devices, "expected PCI devices in the fixture"
    real = root.realpath(f"/sys/bus/pci/devices/{devices[0]}")
    assert real.startswith("/sys/devices/"), f"expected a /sys/devices path, found {real}"
    assert root.read_hex(f"/sys/bus/pci/devices/{devices[0]}/vendor") is not None
    # An absolute link to a place inside the snapshot is inside too.
    (copy / "inside").symlink_to(copy / "proc/cmdline")
    assert root.read_text("/inside") == (copy / "proc/cmdline").read_text()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("virtfn0", "../not-a-pci-function"),
        ("physfn", "../garbage"),
        ("iommu_group", "../../kernel/iommu_groups/x"),
    ],
)
def test_a_corrupt_device_link_names_it(tmp_path: Path, name: str, target: str) -> None:
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    root = HostRoot(copy)
    device = root.realpath(f"/sys/bus/pci/devices/{root.listdir('/sys/bus/pci/devices')[-1]}")
    link = copy / device.lstrip("/") / name
    if os.path.lexists(link):
        link.unlink()
    link.symlink_to(target)
    for command in COMMANDS:
        code, _out, err = run_main(command, "--snapshot", copy)
        assert code == EXIT_USAGE, f"{command} with {device}/{name} -> {target}: exit {code}: {err}"
        assert_one_clear_line(err, "hostdev-harness", f"{device.lstrip('/')}/{name}")


def test_a_missing_file_is_not_corruption(tmp_path: Path) -> None:
    """An older snapshot that did not capture a file: read as not captured, never exit 2 or 3."""
    for path in sorted(recorded_reads("synthetic-nested-qemu", "check").every):
        copy = copy_snapshot("synthetic-nested-qemu", tmp_path / str(abs(hash(path))))
        target = copy / path.lstrip("/")
        if path.startswith("/.harness/manifest"):
            continue
        target.unlink()
        code, _out, err = run_main("check", "--snapshot", copy)
        assert code in (0, 1), f"check with {path} missing: exit {code}, expected 0 or 1: {err}"


# --- the regular-file reader every untrusted file goes through ----------------------------------------


def test_read_regular_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    big = tmp_path / "big"
    with big.open("wb") as stream:
        stream.truncate(MAX_SNAPSHOT_FILE_BYTES + 1)  # sparse: no 16 MiB written
    try:
        for path, reason in (
            (fifo, "a FIFO"),
            (sock_path, "not a regular file"),
            (Path("/dev/null"), "a character device"),
            (tmp_path, "a directory"),
            (big, "above the"),
        ):
            with watchdog(f"read_regular_file({path})"), pytest.raises(NotARegularFileError) as caught:
                read_regular_file(path)
            assert reason in caught.value.problem, (
                f"{path}: expected {reason!r}, found {caught.value.problem!r}"
            )
        with pytest.raises(FileNotFoundError):
            read_regular_file(tmp_path / "absent")
    finally:
        sock.close()


def test_host_file_error_names_the_file_relative_to_the_snapshot(tmp_path: Path) -> None:
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    (copy / "proc/sys/fs/file-max").write_text("lots\n")
    with pytest.raises(HostFileError) as caught:
        HostRoot(copy).read_number("/proc/sys/fs/file-max")
    assert caught.value.path == "proc/sys/fs/file-max" and "expected a decimal number" in str(caught.value)


# --- as a user runs them: subprocesses with a timeout for the issue's hangs -----------------------------

ISSUE_FIFOS = ("/.harness/manifest.json", "/proc/cmdline")


@pytest.mark.parametrize("host_path", ISSUE_FIFOS)
def test_a_fifo_in_a_snapshot_does_not_hang_the_command(tmp_path: Path, host_path: str) -> None:
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    corrupt(copy, host_path, "fifo")
    try:
        result = run("hostdev-harness", "check", "--snapshot", str(copy), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"check --snapshot with {host_path} a FIFO: still running after 60 s (a hang)")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_one_clear_line(result.stderr, "hostdev-harness", host_path.lstrip("/"), "FIFO")


@pytest.mark.parametrize("command", [("restore", "--journal"), ("merge",)])
def test_a_fifo_given_as_journal_or_report_does_not_hang(tmp_path: Path, command: tuple[str, ...]) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    try:
        result = run("hostdev-harness", *command, str(fifo), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} with a FIFO: still running after 60 s (a hang)")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_one_clear_line(result.stderr, "hostdev-harness", str(fifo), "FIFO")


def test_pytest_on_a_corrupt_snapshot_is_a_usage_error_before_tests(tmp_path: Path) -> None:
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    root = HostRoot(copy)
    device = root.realpath(f"/sys/bus/pci/devices/{root.listdir('/sys/bus/pci/devices')[0]}")
    (copy / device.lstrip("/") / "class").write_text("not hex\n")
    result = run(
        "pytest", "suites", "--harness-snapshot", str(copy), "-q", "-p", "no:randomly",
        f"--harness-report-dir={tmp_path / 'reports'}", timeout=120,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert f"{device.lstrip('/')}/class" in result.stderr, f"expected the file named: {result.stderr}"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("probes.json", "[]", "JSON list"),
        ("probes.json", '{"kvm": 1}', "KVM probe"),
        ("probes.json", '{"kvm": {"usable": "yes", "detail": "x"}}', "KVM probe"),
        ("libvirt.json", "{}", "lacks reachable, uri"),
        ("libvirt.json", '{"uri": 1, "reachable": true}', "uri is 1"),
        ("libvirt.json", '{"uri": "x", "reachable": "yes"}', "reachable"),
        ("libvirt.json", '{"uri": "x", "reachable": true, "node_devices": 3}', "node_devices"),
        ("libvirt.json", '{"uri": "x", "reachable": true, "node_devices": {"a": {"name": "a"}}}', "lacks"),
        ("libvirt.json", '{"uri": "x", "reachable": true, "surprise": 1}', "unknown keys surprise"),
    ],
)
def test_json_the_harness_recorded_is_checked_against_its_shape(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    """Valid JSON of the wrong shape is refused, not believed (a "reachable": "yes" is not true)."""
    copy = copy_snapshot("synthetic-intel-iommu-on", tmp_path)
    (copy / ".harness" / name).write_text(content + "\n")
    code, _out, err = run_main("check", "--snapshot", copy)
    assert code == EXIT_USAGE, f"check with .harness/{name} = {content}: exit {code}, expected 2: {err}"
    assert_one_clear_line(err, "hostdev-harness", f".harness/{name}", expected)
