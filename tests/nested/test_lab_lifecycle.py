"""The nested host itself: what L1 offers the suites, the exec channel, and a lifecycle that never leaves
QEMU behind (a failing command, Ctrl-C, a killed parent, a failed boot)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.lab.lab import Lab, start_lab
from harness.lab.paths import cache_dir, reports_dir, state_root
from harness.lab.pytest_plugin import lab_name, spec_path
from harness.lab.spec import load_spec, parse_spec
from harness.lab.state import LabError
from tests.nested.conftest import HOSTDEV_LAB, REPO, checked_exec, qemu_processes, wait_exit, wait_until

pytestmark = pytest.mark.nested


def test_default_lab_boots_with_the_spec_command_line(default_lab: Lab) -> None:
    cmdline = checked_exec(default_lab, "cat /proc/cmdline").split()
    assert cmdline[-2:] == ["intel_iommu=on", "iommu=pt"], f"L1's /proc/cmdline: {cmdline}"


def test_default_lab_has_iommu_groups_vfio_and_udev(default_lab: Lab) -> None:
    output = checked_exec(
        default_lab,
        "ls /sys/kernel/iommu_groups | wc -l; test -c /dev/vfio/vfio && echo vfio-dev; "
        "test -d /sys/module/vfio_pci && echo vfio-pci; pidof systemd-udevd >/dev/null && echo udevd; "
        "dmesg | grep -c 'DMAR-IR: Enabled IRQ remapping'",
    )
    groups, *flags, remap = output.split()
    assert int(groups) >= 8, f"expected the default lab to have IOMMU groups, found {groups}"
    assert flags == ["vfio-dev", "vfio-pci", "udevd"], output
    assert int(remap) >= 1, "no 'DMAR-IR: Enabled IRQ remapping' in L1's kernel log"


def test_libvirtd_answers_from_l0_only_on_loopback(default_lab: Lab) -> None:
    import libvirt

    assert default_lab.libvirt_uri.startswith("qemu+tcp://127.0.0.1:")
    conn = libvirt.open(default_lab.libvirt_uri)
    try:
        assert conn.getHostname() == f"lab-{default_lab.name}"
        assert conn.getLibVersion() > 0
    finally:
        conn.close()
    listeners = Path("/proc/net/tcp").read_text().splitlines()[1:]
    for port in (default_lab.ports.libvirtd, default_lab.ports.agent):
        local = [
            fields[1]
            for fields in (line.split() for line in listeners)
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A"  # 0A: LISTEN
        ]
        assert local == ["0100007F:" + f"{port:04X}"], f"port {port} must listen on 127.0.0.1 only: {local}"


def test_lab_json_and_harness_allow_agree(default_lab: Lab) -> None:
    data = json.loads((default_lab.state_dir / "lab.json").read_text())
    assert data["status"] == "ready" and data["libvirt_uri"] == default_lab.libvirt_uri
    allowed = data["harness_allow"]
    by_id = {device["id"]: device for device in data["devices"]}
    test_ids = [i for i in ("nvme0", "nic0", "nic1", "bridge0-ep0", "bridge0-ep1", "sriovnic0") if i in by_id]
    expected = [by_id[i]["guest_bdf"] for i in test_ids]
    assert sorted(allowed) == sorted(expected), f"lab.json harness_allow {allowed} != test devices {expected}"
    env_allow = checked_exec(default_lab, "echo $HARNESS_ALLOW").strip()
    assert env_allow.split(",") == allowed, f"HARNESS_ALLOW in L1 ({env_allow}) differs from lab.json"
    drivers = checked_exec(default_lab, "; ".join(
        f"basename $(readlink /sys/bus/pci/devices/{bdf}/driver)" for bdf in allowed
    )).split()  # fmt: skip
    assert "virtio-pci" not in drivers and "9pnet_virtio" not in drivers, drivers
    expected_drivers = (
        ["e1000", "e1000e", "igb", "nvme"] if "sriovnic0" in by_id else ["e1000", "e1000e", "nvme"]
    )
    assert sorted(set(drivers)) == expected_drivers, drivers


def test_igb_is_missing_only_where_the_newer_qemu_could_not_be_fetched(default_lab: Lab) -> None:
    data = json.loads((default_lab.state_dir / "lab.json").read_text())
    if "sriovnic0" in data["skipped_devices"]:
        assert data["l1_qemu"]["fetch_error"], (
            f"igb skipped although no fetch failed: {data['skipped_reasons']}"
        )


@pytest.mark.harness_lab_device("igb")
def test_default_lab_has_an_igb_pf_with_7_vfs(default_lab: Lab) -> None:
    """On every machine: its own QEMU if it has igb, else the newer QEMU the lab fetched (or a skip saying why)."""
    data = json.loads((default_lab.state_dir / "lab.json").read_text())
    qemu = data["l1_qemu"]
    pf = default_lab.device("sriovnic0").guest_bdf
    assert pf in default_lab.allowed_bdfs, (
        f"the igb PF {pf} is not on the allowlist {default_lab.allowed_bdfs}"
    )
    sysfs = f"/sys/bus/pci/devices/{pf}"
    found = checked_exec(
        default_lab,
        f"basename $(readlink {sysfs}/driver); cat {sysfs}/vendor {sysfs}/device {sysfs}/sriov_totalvfs",
    ).split()
    assert found == ["igb", "0x8086", "0x10c9", "7"], f"igb PF {pf}: driver, ids, sriov_totalvfs = {found}"
    major = int(qemu["version"].split(".")[0])
    assert major >= 8, f"L1 runs on QEMU {qemu['version']}, which has no igb: {qemu}"
    inside = checked_exec(default_lab, "echo $HOSTDEV_LAB_QEMU").strip()
    assert inside == f"QEMU {qemu['version']} ({qemu['origin']}): {qemu['reason']}", inside
    status = subprocess.run(
        [HOSTDEV_LAB, "status", default_lab.name], capture_output=True, text=True, timeout=300, check=False
    )
    assert f"L1 runs on QEMU {qemu['version']} ({qemu['origin']})" in status.stdout, status.stdout


def test_exec_streams_output_and_returns_the_exit_code(default_lab: Lab) -> None:
    result = subprocess.run(
        [
            HOSTDEV_LAB,
            "exec",
            "--name",
            default_lab.name,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; pwd; exit 7",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 7, f"expected exit 7, got {result.returncode}: {result.stderr}"
    assert result.stdout.split() == ["out", str(REPO)], result.stdout
    assert "err" in result.stderr


def test_reports_written_in_l1_appear_on_l0(default_lab: Lab) -> None:
    name = f"lab-share-{uuid.uuid4().hex[:8]}.txt"
    target = reports_dir() / name
    try:
        checked_exec(default_lab, f"cd {REPO} && echo from-l1 > reports/{name}")
        assert target.read_text() == "from-l1\n", f"{target} should hold what L1 wrote"
    finally:
        target.unlink(missing_ok=True)


def test_qemu_capability_cache_persists_in_the_cache_dir(default_lab: Lab) -> None:
    import libvirt

    conn = libvirt.open(default_lab.libvirt_uri)
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "qemu", 0)
    finally:
        conn.close()
    cached = list((cache_dir() / "l1-libvirt-qemu-cache").glob("capabilities/*.xml"))
    assert cached, "L1's libvirt wrote no QEMU capabilities into the shared cache dir"


def test_nvme_pf_makes_vfs_that_l1_libvirt_lists(default_lab: Lab) -> None:
    import libvirt

    pf = default_lab.device("nvme0").guest_bdf
    assert pf is not None
    sysfs = f"/sys/bus/pci/devices/{pf}"
    checked_exec(default_lab, f"echo 0 > {sysfs}/sriov_drivers_autoprobe && echo 2 > {sysfs}/sriov_numvfs")
    try:
        conn = libvirt.open(default_lab.libvirt_uri)
        try:
            pf_name = "pci_" + pf.replace(":", "_").replace(".", "_")

            def vfs_listed() -> bool:
                xml = conn.nodeDeviceLookupByName(pf_name).XMLDesc(0)
                return xml.count("<address domain=") >= 2 and "virt_functions" in xml

            wait_until(vfs_listed, 180, f"L1's libvirt to list 2 VFs under {pf_name}")
            listed = conn.listDevices("pci", 0)
            vf_names = [n for n in listed if n != pf_name and n.startswith(pf_name[:-6])]
            assert len(vf_names) >= 2, f"expected 2 VF nodedevs next to {pf_name}, libvirt lists {listed}"
        finally:
            conn.close()
    finally:
        default_lab.exec(f"echo 0 > {sysfs}/sriov_numvfs")


def test_two_labs_at_once_have_their_own_ports_and_state(default_lab: Lab) -> None:
    spec = parse_spec({"name": "small", "machine": {"memory_mib": 512}, "devices": [{"kind": "e1000e"}]})
    second = start_lab(spec, name=lab_name("second"))
    try:
        assert second.ports != default_lab.ports and second.state_dir != default_lab.state_dir
        assert default_lab.is_running() and second.is_running()
        rc_first, host_first = default_lab.exec("hostname")
        rc_second, host_second = second.exec("hostname")
        assert (rc_first, rc_second) == (0, 0)
        assert host_first.strip() != host_second.strip(), (host_first, host_second)
    finally:
        second.stop()
    assert qemu_processes(second.name) == [], "the second lab's QEMU survived stop()"


def _interruptible() -> None:
    # As from a terminal: a shell without job control starts background jobs (`make test &`, a CI step) with
    # SIGINT ignored, and Python keeps an ignored SIGINT ignored, so Ctrl-C would never reach the lab.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_in_background(name: str, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [HOSTDEV_LAB, "run", str(spec_path("default")), "--name", name, "--", *command],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )


def _ignored_signals(pid: int) -> str:
    """The signals ``pid`` ignores (/proc/PID/status SigIgn), for a failure message."""
    try:
        mask = next(
            int(line.split()[1], 16)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("SigIgn:")
        )
    except (OSError, StopIteration):
        return "(gone)"
    named = {int(sig): sig.name for sig in signal.Signals}
    return ", ".join(named.get(n, str(n)) for n in range(1, 65) if mask >> (n - 1) & 1) or "none"


def _wait_ready(name: str, process: subprocess.Popen[bytes]) -> None:
    lab_json = state_root() / name / "lab.json"

    def ready() -> bool:
        assert process.poll() is None, (
            f"hostdev-lab run exited early: {process.stderr.read().decode() if process.stderr else ''}"
        )
        return lab_json.exists() and json.loads(lab_json.read_text()).get("status") == "ready"

    wait_until(ready, 240, f"lab {name} to become ready ({lab_json})")


def test_failing_command_returns_its_code_and_leaves_nothing() -> None:
    name = lab_name("fails")
    result = subprocess.run(
        [HOSTDEV_LAB, "run", str(spec_path("default")), "--name", name, "--", "sh", "-c", "exit 3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 3, f"hostdev-lab run should pass on the command's exit code: {result.stderr}"
    assert qemu_processes(name) == [], "QEMU left running after a failing command"
    assert not (state_root() / name).exists(), "state dir left behind after run"


@pytest.mark.parametrize("how", ["sigint", "sigkill-parent"])
def test_interrupt_or_killed_parent_leaves_no_qemu(how: str) -> None:
    name = lab_name(how)
    process = _run_in_background(name, "sleep", "600")
    try:
        _wait_ready(name, process)
        assert qemu_processes(name), "the lab's QEMU should be running before the interruption"
        console = state_root() / name / "console.log"
        # Bounds are for a loaded machine: stopping a lab is seconds when idle (the measured time is printed).
        if how == "sigint":
            process.send_signal(signal.SIGINT)  # what Ctrl-C delivers
            code = wait_exit(
                process,
                300,
                f"hostdev-lab run of {name} to exit after SIGINT",
                f"{console}; signals it ignores: {_ignored_signals(process.pid)}",
            )
            stderr = process.stderr.read().decode()[-2000:] if process.stderr else ""
            assert code == 130, f"expected exit 130 after SIGINT, found {code}; its stderr:\n{stderr}"
        else:
            process.kill()  # no cleanup code runs: PR_SET_PDEATHSIG must take QEMU down
            wait_exit(process, 120, f"the killed hostdev-lab run of {name} to exit")
        wait_until(
            lambda: qemu_processes(name) == [],
            120,
            f"QEMU of lab {name} to exit after {how}",
            f"pgrep -af qemu-system; {console}",
        )
    finally:
        if process.poll() is None:
            process.kill()
        for line in qemu_processes(name):
            os.kill(int(line.split()[0]), signal.SIGKILL)
        subprocess.run([HOSTDEV_LAB, "down", name], capture_output=True, check=False)


def test_failed_boot_raises_with_the_console_tail() -> None:
    # Blacklisting 9p makes the initramfs fail to reach L0's root: a real boot failure, reached in seconds.
    spec = load_spec(spec_path("default"))
    broken = parse_spec(
        {
            "name": "broken",
            "devices": [],
            "kernel": {"cmdline": spec.kernel.cmdline, "extra_args": ["module_blacklist=9p"]},
        }
    )
    name = lab_name("broken")
    started = time.monotonic()
    with pytest.raises(LabError) as caught:
        start_lab(broken, name=name)
    message = str(caught.value)
    assert "console tail" in message and "insmod 9p.ko" in message, message
    # Found from the console, not by running into the boot timeout (no fixed bound: a loaded machine is slower).
    took = time.monotonic() - started
    assert "did not answer within" not in message, (
        f"expected the boot failure seen on the console, found a timeout after {took:.0f} s: {message}"
    )
    print(f"failed boot reported after {took:.1f} s")
    assert qemu_processes(name) == [], "QEMU left running after a failed boot"
    subprocess.run([HOSTDEV_LAB, "down", name], capture_output=True, check=False)


def test_bad_spec_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[iommu]\nmodel = "smmuv3"\n')
    result = subprocess.run(
        [HOSTDEV_LAB, "run", str(bad), "--", "true"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 2
    assert "'iommu.model' = 'smmuv3'" in result.stderr, result.stderr
    assert not (state_root() / "bad").exists()


def test_status_and_console_find_the_running_lab(default_lab: Lab) -> None:
    status = subprocess.run(
        [HOSTDEV_LAB, "status", default_lab.name, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (data,) = json.loads(status.stdout)
    assert data["pid"] == default_lab.pid and data["ports"]["libvirtd"] == default_lab.ports.libvirtd
    console = subprocess.run(
        [HOSTDEV_LAB, "console", default_lab.name, "-n", "200"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert console.returncode == 0 and "stage2 start" in console.stdout, console.stdout[-2000:]


def test_boot_timeout_raises_with_the_console_tail_and_stops_qemu() -> None:
    spec = parse_spec({"name": "slow", "devices": []})
    name = lab_name("timeout")
    with pytest.raises(LabError) as caught:
        start_lab(spec, name=name, boot_timeout=3)
    message = str(caught.value)
    assert "did not answer within 3s" in message and "console tail" in message, message
    assert qemu_processes(name) == [], "QEMU left running after a boot timeout"
    subprocess.run([HOSTDEV_LAB, "down", name], capture_output=True, check=False)
