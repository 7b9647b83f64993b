"""The limits check reads the limits of the processes that will hold the devices: the libvirt daemon that
starts QEMU (its /proc/PID/limits, or its systemd unit when it is not running), qemu.conf's max_* settings,
and whether the daemon is a system one (it raises RLIMIT_MEMLOCK per guest) or a session one (it cannot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.checks.preparation import CheckPlan
from harness.checks.result import CheckResult
from harness.opening import open_host
from tests.synthetic_hosts import BIG_LIMITS, DAEMON_PID
from tests.test_check_branches import SESSION, SMALL_LIMITS, _check

# A healthy Debian host: the daemon gets LimitNOFILE=8192 from its unit, memlock stays at the 8 MiB default.
DAEMON_LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max processes             63431                63431                processes \n"
    "Max open files            8192                 8192                 files     \n"
    "Max locked memory         8388608              8388608              bytes     \n"
)
SELF_SMALL = {"/proc/self/limits": SMALL_LIMITS}  # the harness's own limits, which QEMU never gets
UNIT = "/lib/systemd/system/libvirtd.service"


def _limits(tmp_path: Path, plan: CheckPlan | None = None, **changes: Any) -> CheckResult:
    return _check(tmp_path, "limits", plan=plan, **changes)


def _says(result: CheckResult, verdict: str, *fragments: str) -> None:
    text = result.explain()
    assert str(result.verdict) == verdict, f"expected {verdict}, found:\n{text}"
    for fragment in fragments:
        assert fragment in text, f"expected {fragment!r} in:\n{text}"


def test_a_healthy_system_libvirt_host_passes(tmp_path: Path) -> None:
    """The system daemon raises locked memory itself; its own 8 MiB and the harness's 64 files do not apply."""
    files = {**SELF_SMALL}
    result = _limits(
        tmp_path, CheckPlan(planned_devices=2, guest_memory_mib=4096), limits=DAEMON_LIMITS, files=files
    )
    _says(
        result,
        "PASS",
        f"QEMU is started by libvirtd (pid {DAEMON_PID}, uid 0)",
        f"open files: 8192 from /proc/{DAEMON_PID}/limits (libvirtd, pid {DAEMON_PID})",
        "libvirt sets RLIMIT_MEMLOCK of each QEMU with a VFIO device",
    )
    assert "/proc/self" not in result.explain(), result.explain()


def test_virtqemud_is_named_when_it_starts_qemu(tmp_path: Path) -> None:
    _says(
        _limits(tmp_path, limits=DAEMON_LIMITS, daemon="virtqemud"),
        "PASS",
        "/proc/812/limits (virtqemud, pid 812)",
    )


def test_the_daemons_open_files_decide_not_this_process(tmp_path: Path) -> None:
    small_daemon = SMALL_LIMITS
    _says(
        _limits(tmp_path / "a", limits=small_daemon, files={"/proc/self/limits": BIG_LIMITS}),
        "FAIL",
        "64 files",
    )


def test_max_files_in_qemu_conf_is_what_qemu_gets(tmp_path: Path) -> None:
    conf = {"/etc/libvirt/qemu.conf": 'max_files = 4096\nmax_processes = 2048\nmax_core = "unlimited"\n'}
    _says(
        _limits(tmp_path, limits=SMALL_LIMITS, files=conf),
        "PASS",
        "open files: 4096 from max_files = 4096 in /etc/libvirt/qemu.conf",
        "max_processes = 2048 in /etc/libvirt/qemu.conf",
        "max_core = unlimited in /etc/libvirt/qemu.conf",
    )


@pytest.mark.parametrize(
    ("memlock", "verdict"),
    [("8388608              8388608", "WARN"), ("unlimited            unlimited", "PASS")],
    ids=["default-8MiB", "unlimited"],
)
def test_a_session_daemon_cannot_raise_locked_memory(memlock: str, verdict: str, tmp_path: Path) -> None:
    limits = DAEMON_LIMITS.replace("8388608              8388608", memlock)
    result = _limits(tmp_path, limits=limits, daemon_uid=1000, libvirt=SESSION)
    _says(result, verdict, "qemu:///session (session)", "(libvirtd, pid 812)")
    if verdict == "WARN":
        _says(result, "WARN", "locked memory of the session libvirt daemon", "qemu:///system")


def test_a_session_daemon_not_running_inherits_this_process(tmp_path: Path) -> None:
    result = _limits(tmp_path, limits=DAEMON_LIMITS, daemon=None, libvirt=SESSION)
    _says(result, "WARN", "/proc/self/limits (this process)", "started by its first client")


def test_a_system_daemon_not_running_is_read_from_its_unit(tmp_path: Path) -> None:
    unit = "[Service]\nExecStart=/usr/sbin/libvirtd $LIBVIRTD_ARGS\nLimitNOFILE=8192\n"
    dropin = {
        UNIT: unit,
        "/etc/systemd/system/libvirtd.service.d/nofile.conf": "[Service]\nLimitNOFILE=100:200\n",
    }
    _says(
        _limits(tmp_path / "a", daemon=None, files={UNIT: unit}),
        "PASS",
        f"open files: 8192 from LimitNOFILE of libvirtd.service in {UNIT}",
    )
    _says(
        _limits(tmp_path / "b", daemon=None, files=dropin),
        "FAIL",
        "LimitNOFILE of libvirtd.service in /etc/systemd/system/libvirtd.service.d/nofile.conf",
    )


def test_what_cannot_be_read_is_a_warn_that_names_it_never_a_pass(tmp_path: Path) -> None:
    _says(
        _limits(tmp_path / "none", daemon=None),
        "WARN",
        "not read: the open-file limit QEMU will get",
        "no max_files in qemu.conf, no libvirt daemon or unit found",
    )
    # A snapshot from before the daemons were captured: its /proc/self/limits is the capturing process.
    old = _limits(tmp_path / "old", daemon=None, daemons_captured=False)
    _says(old, "WARN", "did not capture the daemons' limits", "take a new snapshot")
    remote = _limits(tmp_path / "remote", libvirt={"uri": "qemu+ssh://kvm1/system"})
    _says(remote, "WARN", "(remote)", "not read")


def test_a_private_libvirtd_in_its_own_mount_namespace_is_not_the_hosts(tmp_path: Path) -> None:
    """The harness's private libvirtd (harness/libvirt/daemon.py) runs in a mount namespace of its own."""
    from dataclasses import replace

    from harness.checks.preparation import run_check
    from tests.synthetic_hosts import write_host
    from tests.test_check_branches import HEALTHY

    write_host(replace(HEALTHY, name="t", limits=SMALL_LIMITS), tmp_path / "t")
    (tmp_path / "t/proc/1/ns").mkdir(parents=True)
    (tmp_path / "t/proc/1/ns/mnt").symlink_to("mnt:[4026531840]")
    (tmp_path / f"t/proc/{DAEMON_PID}/ns").mkdir()
    (tmp_path / f"t/proc/{DAEMON_PID}/ns/mnt").symlink_to("mnt:[4026532999]")
    result = run_check("limits", open_host(tmp_path / "t"))
    _says(result, "WARN", "no daemon of it found in /proc")
