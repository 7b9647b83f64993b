"""Every FAIL and WARN branch of every preparation check, each on a synthesized host that differs from a
healthy one in the one fact the branch is about: a check that stops telling them apart fails here."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.checks.preparation import PREPARATION_CHECKS, CheckPlan, run_all, run_check
from harness.checks.result import CheckResult, Verdict
from harness.opening import open_host
from tests.synthetic_hosts import (
    ECAP_WITH_INTREMAP,
    ECAP_WITHOUT_INTREMAP,
    SyntheticHost,
    synthetic_hosts,
    write_host,
)

HEALTHY = next(host for host in synthetic_hosts() if host.name == "synthetic-intel-iommu-on")
AMD = next(host for host in synthetic_hosts() if host.name == "synthetic-amd-iommu-on")
SESSION = {"uri": "qemu:///session"}
SMALL_LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max open files            64                   64                   files     \n"
    "Max locked memory         65536                65536                bytes     \n"
)


def _check(
    tmp_path: Path, name: str, base: SyntheticHost = HEALTHY, plan: CheckPlan | None = None, **changes: Any
) -> CheckResult:
    host = replace(base, name="t", **changes)
    write_host(host, tmp_path / "t")
    return run_check(name, open_host(tmp_path / "t"), plan)


def _expect(result: CheckResult, verdict: str, summary: str, hint: str | None = None) -> None:
    assert str(result.verdict) == verdict and summary in result.summary, (
        f"{result.name}: expected {verdict} with {summary!r} in the summary, found:\n{result.explain()}"
    )
    if verdict != "PASS":
        assert result.hint, f"{result.name} {verdict} without a hint:\n{result.explain()}"
    if hint is not None:
        assert hint in (result.hint or ""), f"{result.name}: hint lacks {hint!r}:\n{result.explain()}"


CASES: list[tuple[str, dict[str, Any], str, str, str | None]] = [
    # (check, changes to the healthy host, verdict, summary fragment, hint fragment)
    ("hardware_virtualization", {}, "PASS", "KVM runs guests", None),
    ("hardware_virtualization", {"flags": "fpu x2apic"}, "WARN", "shows no vmx/svm", "boot a real guest"),
    (
        "hardware_virtualization",
        {"kvm_usable": False, "flags": "fpu hypervisor"},
        "WARN",
        "under TCG",
        "nested",
    ),
    ("hardware_virtualization", {"kvm_usable": False, "flags": "fpu vmx"}, "FAIL", "not usable", "VT-x"),
    ("iommu_firmware", {}, "PASS", "Intel VT-d", None),
    ("iommu_firmware", {"vendor": "none", "groups": False}, "FAIL", "no IOMMU", "enable VT-d"),
    ("iommu_kernel", {}, "PASS", "IOMMU groups", None),
    (
        "iommu_kernel",
        {"groups": False, "cmdline": "intel_iommu=off"},
        "FAIL",
        "(intel_iommu=off)",
        "remove intel_iommu=off",
    ),
    ("iommu_kernel", {"groups": False, "cmdline": "iommu=off"}, "FAIL", "(iommu=off)", "remove iommu=off"),
    (
        "iommu_kernel",
        {"groups": False, "cmdline": "quiet"},
        "FAIL",
        "made no IOMMU groups",
        "add intel_iommu=on",
    ),
    (
        "iommu_kernel",
        {"groups": False, "vendor": "none"},
        "FAIL",
        "no IOMMU for the kernel",
        "iommu_firmware",
    ),
    ("interrupt_remapping", {}, "PASS", "enabled", None),
    ("interrupt_remapping", {"dmesg": []}, "PASS", "enabled", None),  # the ecap bit alone says so
    (
        "interrupt_remapping",
        {"vendor": "none", "groups": False, "dmesg": []},
        "FAIL",
        "no IOMMU",
        "enable VT-d",
    ),
    ("interrupt_remapping", {"ecap": ECAP_WITHOUT_INTREMAP, "dmesg": []}, "FAIL", "not supported", "x2APIC"),
    (
        "interrupt_remapping",
        {"cmdline": "intel_iommu=on intremap=off"},
        "FAIL",
        "intremap=off",
        "remove intremap=off",
    ),
    ("interrupt_remapping", {"unsafe_param": "Y"}, "WARN", "works, yet unsafe", "remove it"),
    (
        "interrupt_remapping",
        {"cmdline": "intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts=1"},
        "WARN",
        "works, yet unsafe",
        None,
    ),
    (
        "interrupt_remapping",
        {"modprobe": {"v.conf": "options vfio_iommu_type1 allow_unsafe_interrupts=1\n"}},
        "WARN",
        "works, yet unsafe",
        None,
    ),
    (
        "interrupt_remapping",
        {"ecap": ECAP_WITHOUT_INTREMAP, "dmesg": [], "unsafe_param": "1"},
        "WARN",
        "only works because unsafe",
        "never changes",
    ),
    ("vfio_ready", {}, "PASS", "ready", None),
    (
        "vfio_ready",
        {"cmdline": "intel_iommu=on module_blacklist=vfio_pci"},
        "FAIL",
        "vfio_pci is blacklisted",
        "module_blacklist",
    ),
    (
        "vfio_ready",
        {"modprobe": {"b.conf": "blacklist vfio-pci\n"}},
        "FAIL",
        "vfio_pci is blacklisted",
        "/etc/modprobe.d/b.conf",
    ),
    (
        "vfio_ready",
        {"modprobe": {"b.conf": "install vfio_iommu_type1 /bin/false\n"}},
        "FAIL",
        "vfio_iommu_type1 is blacklisted",
        None,
    ),
    (
        "vfio_ready",
        {"loaded_modules": ("kvm",), "modules_dep": ""},
        "FAIL",
        "not in this kernel",
        "CONFIG_VFIO",
    ),
    (
        "vfio_ready",
        {"loaded_modules": ("kvm",), "cmdline": "intel_iommu=on nomodule"},
        "FAIL",
        "module loading is disabled",
        "nomodule",
    ),
    (
        "vfio_ready",
        {"loaded_modules": ("kvm",), "vfio_node": False},
        "WARN",
        "does not exist yet",
        "modprobe vfio-pci",
    ),
    ("libvirt_ready", {}, "PASS", "vfio backend is offered", None),
    (
        "libvirt_ready",
        {"libvirt": {"reachable": False, "error": "refused"}},
        "FAIL",
        "not reachable",
        "start libvirtd",
    ),
    (
        "libvirt_ready",
        {"libvirt": {"pci_backends": ["default"]}},
        "FAIL",
        "no VFIO backend",
        "domcapabilities",
    ),
    ("libvirt_ready", {"libvirt": {"subsys_types": ["usb"]}}, "FAIL", "no VFIO backend", None),
    ("libvirt_ready", {"libvirt": {"hostdev_supported": False}}, "FAIL", "no VFIO backend", None),
    (
        "libvirt_ready",
        {"libvirt": {"subsys_types": [], "pci_backends": [], "error": "domcapabilities: no QEMU binary"}},
        "FAIL",
        "no VFIO backend",
        None,
    ),
    ("libvirt_ready", {"libvirt": {"reachable": False, "error": None}}, "FAIL", "not reachable", None),
    ("next_boot", {}, "PASS", "keeps the IOMMU", None),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=on intel_iommu=off"\n'},
        "FAIL",
        "disables the IOMMU",
        "remove intel_iommu=off from /etc/default/grub (line 1)",
    ),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=on"\nGRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=off"\n'},
        "FAIL",
        "amd_iommu=off",
        "(line 2)",
    ),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=on intremap=off"\n'},
        "FAIL",
        "disables interrupt remapping",
        "remove intremap=off",
    ),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="quiet"\n'},
        "WARN",
        "intel_iommu=on is not on",
        "append intel_iommu=on iommu=pt to GRUB_CMDLINE_LINUX in /etc/default/grub (line 1), then run update-grub",
    ),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="quiet"\n', "groups": False},
        "FAIL",
        "intel_iommu=on is not on",
        None,
    ),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=off intel_iommu=on"\n'},
        "PASS",
        "keeps the IOMMU",
        None,
    ),
    (
        "next_boot",
        {
            "grub_text": 'GRUB_CMDLINE_LINUX="quiet"\n',
            "files": {"/boot/grub/grub.cfg": "linux /vmlinuz root=/dev/sda ro intel_iommu=on\n"},
        },
        "WARN",
        "next update-grub drops intel_iommu=on",
        "GRUB_CMDLINE_LINUX in /etc/default/grub (line 1)",
    ),
    (
        "next_boot",
        {
            "grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=on"\n',
            "files": {
                "/boot/grub/grub.cfg": "linux /vmlinuz root=/dev/sda ro intel_iommu=on intel_iommu=off\n"
            },
        },
        "FAIL",
        "next boot disables",
        None,
    ),
    (
        "next_boot",
        {
            "grub_text": 'GRUB_CMDLINE_LINUX="intel_iommu=on intel_iommu=off"\n',
            "files": {"/boot/grub/grub.cfg": "linux /vmlinuz root=/dev/sda ro intel_iommu=on\n"},
        },
        "WARN",
        "next update-grub",
        "remove intel_iommu=off",
    ),
    ("next_boot", {"grub_text": "", "files": {}}, "WARN", "no boot loader configuration", "persistent"),
    (
        "next_boot",
        {"grub_text": 'GRUB_CMDLINE_LINUX_DEFUALT="intel_iommu=on"\n'},
        "FAIL",
        "which grub never reads",
        "rename GRUB_CMDLINE_LINUX_DEFUALT to GRUB_CMDLINE_LINUX_DEFAULT",
    ),
    ("limits", {}, "PASS", "cover", None),
    ("limits", {"limits": SMALL_LIMITS}, "FAIL", "may open only 64 files", "max_files"),
    (
        "limits",
        {"files": {"/etc/libvirt/qemu.conf": "max_files = 100\n"}},
        "FAIL",
        "may open only 100 files",
        None,
    ),
    ("limits", {"file_max": "100"}, "FAIL", "system-wide", "fs.file-max"),
    # A session daemon cannot raise QEMU's locked memory (a system one does: see tests/test_limits.py).
    (
        "limits",
        {"limits": SMALL_LIMITS.replace("64 ", "1048576 "), "daemon_uid": 1000, "libvirt": SESSION},
        "WARN",
        "locked memory",
        "memlock",
    ),
]


@pytest.mark.parametrize(
    ("check", "changes", "verdict", "summary", "hint"),
    CASES,
    ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)],
)
def test_check_branch(
    check: str, changes: dict[str, Any], verdict: str, summary: str, hint: str | None, tmp_path: Path
) -> None:
    result = _check(tmp_path, check, **changes)
    assert result.name == check, f"{check} reported itself as {result.name!r}"
    assert all(isinstance(line, str) and line for line in result.evidence), result.evidence
    _expect(result, verdict, summary, hint)


@pytest.mark.parametrize(
    ("changes", "source"),
    [
        ({"unsafe_param": "Y"}, "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts = Y"),
        (
            {"cmdline": "intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts=1"},
            "/proc/cmdline: vfio_iommu_type1.allow_unsafe_interrupts=1",
        ),
        (
            {"modprobe": {"v.conf": "options vfio_iommu_type1 allow_unsafe_interrupts=1\n"}},
            "/etc/modprobe.d/v.conf: options vfio_iommu_type1",
        ),
    ],
)
def test_unsafe_interrupts_name_where_they_are_allowed(
    changes: dict[str, Any], source: str, tmp_path: Path
) -> None:
    result = _check(tmp_path, "interrupt_remapping", **changes)
    assert f"unsafe interrupts allowed by {source}" in "\n".join(result.evidence), result.explain()


def test_results_serialize_whole() -> None:
    result = CheckResult("n", "Checking n", Verdict.WARN, "s", ["e1", "e2"], "h")
    assert result.to_dict() == {
        "name": "n", "title": "Checking n", "verdict": "WARN", "summary": "s", "evidence": ["e1", "e2"], "hint": "h",
    }  # fmt: skip
    assert result.explain() == "Checking n: WARN - s\n  evidence: e1\n  evidence: e2\n  hint: h"
    assert CheckResult("n", "T", Verdict.PASS, "s").explain() == "T: PASS - s"


def test_run_all_runs_every_check_with_the_plan(tmp_path: Path) -> None:
    write_host(replace(HEALTHY, name="t"), tmp_path / "t")
    host = open_host(tmp_path / "t")
    results = run_all(host, CheckPlan(planned_devices=10**6))
    assert [r.name for r in results] == list(PREPARATION_CHECKS)
    assert {r.name: str(r.verdict) for r in results}["limits"] == "FAIL", "run_all must pass the plan on"
    assert all(isinstance(line, str) for r in run_all(host) for line in r.evidence)


def test_amd_branches(tmp_path: Path) -> None:
    _expect(_check(tmp_path / "a", "iommu_firmware", AMD), "PASS", "AMD-Vi")
    off = _check(tmp_path / "b", "iommu_kernel", AMD, groups=False, cmdline="amd_iommu=off")
    _expect(
        off,
        "FAIL",
        "(amd_iommu=off)",
        "remove amd_iommu=off from the kernel command line; AMD: the IOMMU is on by default",
    )
    none = _check(tmp_path / "e", "iommu_kernel", AMD, groups=False, cmdline="quiet")
    _expect(
        none,
        "FAIL",
        "made no IOMMU groups",
        "AMD: the IOMMU is on by default; remove amd_iommu=off / iommu=off",
    )
    assert "amd_iommu=off" in (off.hint or "") and "AMD" in (off.hint or "")
    units_only = _check(
        tmp_path / "c",
        "iommu_firmware",
        AMD,
        vendor="none",
        files={"/sys/class/iommu/ivhd0/amd-iommu/cap": "0x190\n"},
    )
    _expect(units_only, "PASS", "IOMMU units registered by the kernel (amd)")
    assert any(
        "amd_iommu=on is not a real switch" in line
        for line in _check(tmp_path / "d", "iommu_kernel", AMD).evidence
    )


def test_iommu_kernel_notes(tmp_path: Path) -> None:
    result = _check(tmp_path, "iommu_kernel", cmdline="quiet iommu=pt intremap=on amd_iommu_dump nosmt")
    assert result.evidence[1] == "/proc/cmdline IOMMU arguments: iommu=pt intremap=on amd_iommu_dump", (
        result.explain()
    )
    assert "iommu=pt: host-owned devices bypass translation for speed (less isolation of host DMA)" in (
        result.evidence
    ), result.explain()
    assert (
        "intel_iommu= is not given: this kernel enables VT-d by default (CONFIG_INTEL_IOMMU_DEFAULT_ON)"
        in result.evidence
    ), result.explain()


def test_limits_boundaries_and_unknowns(tmp_path: Path) -> None:
    exactly = {"/etc/libvirt/qemu.conf": "max_files = 288\n"}  # 256 + 32 for one device
    _expect(_check(tmp_path / "a", "limits", files=exactly), "PASS", "cover")
    _expect(_check(tmp_path / "b", "limits", file_max="288"), "PASS", "cover")
    _expect(_check(tmp_path / "c", "limits", file_max="287"), "FAIL", "system-wide")
    unlimited = SMALL_LIMITS.replace("64                   64  ", "unlimited            unlimited")
    result = _check(
        tmp_path / "d",
        "limits",
        limits=unlimited.replace("65536                65536", "unlimited            unlimited"),
    )
    assert "open files: unlimited from /proc/812/limits (libvirtd, pid 812)" in result.evidence[1], (
        result.explain()
    )
    unknown = _check(
        tmp_path / "e",
        "limits",
        limits="Limit  Soft Limit  Hard Limit  Units\n",
        daemon_uid=1000,
        libvirt=SESSION,
    )
    assert "locked memory: not read" in unknown.evidence[2], unknown.explain()


def test_limits_scale_with_the_plan(tmp_path: Path) -> None:
    conf = {"/etc/libvirt/qemu.conf": "max_files = 300\n"}
    _expect(_check(tmp_path / "a", "limits", plan=CheckPlan(planned_devices=1), files=conf), "PASS", "cover")
    _expect(
        _check(tmp_path / "b", "limits", plan=CheckPlan(planned_devices=2), files=conf),
        "FAIL",
        "2 device(s) need about 320",
    )
    memlock = SMALL_LIMITS.replace("64 ", "1048576 ").replace(
        "65536                65536", "2147483648           2147483648"
    )
    session: dict[str, Any] = {"daemon_uid": 1000, "libvirt": SESSION}
    _expect(
        _check(tmp_path / "c", "limits", plan=CheckPlan(guest_memory_mib=1024), limits=memlock, **session),
        "PASS",
        "cover",
    )
    _expect(
        _check(tmp_path / "d", "limits", plan=CheckPlan(guest_memory_mib=1025), limits=memlock, **session),
        "WARN",
        "locked memory",
    )


# What a mutation run (make mutation) found no test reading: each test below fails when that line changes.
RHEL9 = next(host for host in synthetic_hosts() if host.name == "synthetic-rhel9-bls")
RHEL9_ENTRY = next(path for path in RHEL9.files if path.endswith("el9.x86_64.conf"))


def _rhel9_with_options(options: str) -> dict[str, str | bytes]:
    """The RHEL 9 host's files with the default entry's options replaced and no /etc/kernel/cmdline."""
    files = {path: text for path, text in RHEL9.files.items() if path != "/etc/kernel/cmdline"}
    files[RHEL9_ENTRY] = f"title RHEL 9.4\nversion 5.14.0-427.el9.x86_64\nlinux /vmlinuz\noptions {options}\n"
    return files


def test_next_boot_on_bls_removes_an_off_switch_with_grubby(tmp_path: Path) -> None:
    result = _check(
        tmp_path, "next_boot", RHEL9, files=_rhel9_with_options("root=/dev/sda ro intel_iommu=off")
    )
    _expect(
        result,
        "FAIL",
        f"the next boot disables the IOMMU: intel_iommu=off written in {RHEL9_ENTRY} line 4",
        f"remove intel_iommu=off from {RHEL9_ENTRY} (line 4), then run "
        'grubby --update-kernel=ALL --remove-args="intel_iommu=off"',
    )


def test_next_boot_on_bls_adds_the_switch_with_grubby(tmp_path: Path) -> None:
    result = _check(
        tmp_path,
        "next_boot",
        RHEL9,
        grub_text='GRUB_CMDLINE_LINUX="rhgb quiet"\n',
        files=_rhel9_with_options("root=/dev/sda ro"),
    )
    _expect(
        result,
        "WARN",
        f"intel_iommu=on is not on the next boot's command line ({RHEL9_ENTRY})",
        "append intel_iommu=on iommu=pt to GRUB_CMDLINE_LINUX in /etc/default/grub (line 1), then run "
        'grubby --update-kernel=ALL --args="intel_iommu=on iommu=pt"',
    )


def test_next_boot_names_an_entry_without_arguments(tmp_path: Path) -> None:
    result = _check(tmp_path, "next_boot", files={"/boot/grub/grub.cfg": "linux /vmlinuz-6.1\n"})
    assert "next boot (/boot/grub/grub.cfg line 1 (first menu entry)): (none)" in result.evidence, (
        result.explain()
    )


def test_next_boot_without_any_command_line_says_none_was_found(tmp_path: Path) -> None:
    # systemd-boot installed, but no entry and no /etc/kernel/cmdline: nothing gives the kernel arguments.
    result = _check(
        tmp_path, "next_boot", grub_text="", files={"/boot/efi/loader/loader.conf": "timeout 3\n"}
    )
    _expect(
        result,
        "WARN",
        "intel_iommu=on is not on the next boot's command line (none found)",
        "append intel_iommu=on iommu=pt to /etc/kernel/cmdline, then run kernel-install add",
    )


def test_iommu_firmware_names_every_table_and_unit(tmp_path: Path) -> None:
    two_units = _check(
        tmp_path / "a", "iommu_firmware", files={"/sys/class/iommu/dmar1/intel-iommu/ecap": "f020de\n"}
    )
    assert two_units.evidence == [
        "/sys/firmware/acpi/tables: APIC, DMAR, DSDT, FACP, MCFG",
        "/sys/class/iommu: dmar0 (intel), dmar1 (intel)",
    ], two_units.explain()
    host = replace(HEALTHY, name="t", vendor="none", groups=False)
    write_host(host, tmp_path / "b")
    shutil.rmtree(tmp_path / "b/sys/firmware/acpi/tables")  # no ACPI at all (a direct kernel boot without it)
    bare = run_check("iommu_firmware", open_host(tmp_path / "b"))
    assert bare.evidence == ["/sys/firmware/acpi/tables: empty", "/sys/class/iommu: empty"], bare.explain()


@pytest.mark.parametrize(
    ("arguments", "switch"),
    [
        ("intremap=off", "intremap=off"),
        ("intremap=nosid,off", "intremap=nosid,off"),  # options are comma-separated
        ("intremap=off intremap=nosid", "intremap=off"),  # nosid says neither on nor off
        ("nointremap", "nointremap"),
        ("intremap=on nointremap", "nointremap"),
        ("intremap=off,on", None),  # the last on/off wins
        ("nointremap intremap=on", None),
        ("intremap=on=off", None),  # the value is all after the first '=': "on=off" starts with on
        ("intremap=off=on", "intremap=off=on"),
        ("intremap=nosid", None),
    ],
)
def test_intremap_is_read_the_way_the_kernel_reads_it(
    arguments: str, switch: str | None, tmp_path: Path
) -> None:
    """drivers/iommu/irq_remapping.c: setup_irqremap matches each comma-separated option by prefix."""
    running = _check(tmp_path / "a", "interrupt_remapping", cmdline=f"intel_iommu=on {arguments}")
    boot = _check(tmp_path / "b", "next_boot", grub_text=f'GRUB_CMDLINE_LINUX="intel_iommu=on {arguments}"\n')
    if switch is None:
        _expect(running, "PASS", "interrupt remapping is enabled")
        _expect(boot, "PASS", "keeps the IOMMU")
        return
    _expect(
        running,
        "FAIL",
        f"interrupt remapping is disabled by {switch}: vfio_iommu_type1 refuses",
        f"remove {switch} from the kernel command line. Only for trusted guests",
    )
    _expect(
        boot,
        "FAIL",
        f"the next boot disables interrupt remapping: {switch} written in /etc/default/grub line 1",
        f"remove {switch} from /etc/default/grub (line 1), then run update-grub",
    )


@pytest.mark.parametrize(
    ("value", "unsafe"),
    [("1", True), ("Y", True), ("y", True), ("yes", True), ("on", True), ("ON", True), ("oNe", True), ("", True),
     ("0", False), ("N", False), ("n", False), ("off", False), ("OFF", False), ("x", False)],
)  # fmt: skip
def test_allow_unsafe_interrupts_is_read_as_the_kernel_reads_a_bool(
    value: str, unsafe: bool, tmp_path: Path
) -> None:
    """kstrtobool: y/Y/1/on in any case is true, a bare parameter name too; both on the command line and
    in an options line of /etc/modprobe.d."""
    given = f"={value}" if value else ""
    cmdline = _check(
        tmp_path / "a",
        "interrupt_remapping",
        cmdline=f"intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts{given}",
    )
    options = f"options vfio_iommu_type1 dma_entry_limit=65535 allow_unsafe_interrupts{given}"
    modprobe = _check(tmp_path / "b", "interrupt_remapping", modprobe={"v.conf": options + "\n"})
    if not unsafe:
        _expect(cmdline, "PASS", "interrupt remapping is enabled")
        _expect(modprobe, "PASS", "interrupt remapping is enabled")
        return
    _expect(cmdline, "WARN", "works, yet unsafe interrupts are allowed as well", "remove it")
    assert (
        f"unsafe interrupts allowed by /proc/cmdline: vfio_iommu_type1.allow_unsafe_interrupts{given}"
        in cmdline.evidence
    ), cmdline.explain()
    _expect(modprobe, "WARN", "works, yet unsafe interrupts are allowed as well", "remove it")
    assert f"unsafe interrupts allowed by /etc/modprobe.d/v.conf: {options}" in modprobe.evidence, (
        modprobe.explain()
    )


def test_the_last_allow_unsafe_interrupts_in_an_options_line_wins(tmp_path: Path) -> None:
    line = "options vfio_iommu_type1 allow_unsafe_interrupts=1 allow_unsafe_interrupts=0"
    _expect(_check(tmp_path, "interrupt_remapping", modprobe={"v.conf": line + "\n"}), "PASS", "enabled")


def test_intremap_after_the_init_separator_is_not_the_kernels(tmp_path: Path) -> None:
    result = _check(tmp_path, "interrupt_remapping", cmdline="intel_iommu=on -- intremap=off")
    _expect(result, "PASS", "interrupt remapping is enabled")


@pytest.mark.parametrize(
    ("conf", "blocked"),
    [
        ("blacklist nouveau\nblacklist vfio-pci\n", "/etc/modprobe.d/b.conf: blacklist vfio-pci"),
        (
            "install vfio_iommu_type1 /bin/true\n",
            "/etc/modprobe.d/b.conf: install vfio_iommu_type1 /bin/true",
        ),
        ("install vfio_pci /sbin/modprobe --ignore-install vfio_pci\n", None),  # loads it, with extras
        ("options vfio_pci ids=8086:10ca\n", None),
    ],
)
def test_blacklist_forms_in_modprobe_d(conf: str, blocked: str | None, tmp_path: Path) -> None:
    result = _check(tmp_path, "vfio_ready", modprobe={"b.conf": conf})
    if blocked is None:
        _expect(result, "PASS", "vfio modules ready")
    else:
        _expect(
            result,
            "FAIL",
            "is blacklisted: nothing can bind to vfio-pci",
            f"remove the blacklist ({blocked})",
        )


def test_every_blacklisted_vfio_module_is_named(tmp_path: Path) -> None:
    result = _check(tmp_path, "vfio_ready", modprobe={"b.conf": "blacklist vfio\nblacklist vfio_pci\n"})
    _expect(
        result,
        "FAIL",
        "vfio, vfio_pci are blacklisted: nothing can bind to vfio-pci",
        "remove the blacklist (/etc/modprobe.d/b.conf: blacklist vfio; /etc/modprobe.d/b.conf: blacklist "
        "vfio_pci) and load the module: modprobe vfio-pci",
    )


@pytest.mark.parametrize(
    ("dmesg", "verdict"),
    [(["DMAR-IR: Enabled IRQ remapping in x2apic mode"], "PASS"), (["DMAR: IOMMU enabled"], "FAIL")],
)
def test_without_iommu_units_the_kernel_log_decides(dmesg: list[str], verdict: str, tmp_path: Path) -> None:
    """No /sys/class/iommu (an older kernel): only the kernel log says whether remapping came up."""
    write_host(replace(HEALTHY, name="t", dmesg=dmesg), tmp_path / "t")
    shutil.rmtree(tmp_path / "t/sys/class/iommu")
    result = run_check("interrupt_remapping", open_host(tmp_path / "t"))
    _expect(result, verdict, "interrupt remapping is enabled" if verdict == "PASS" else "not supported")


def test_interrupt_remapping_without_dma_translation(tmp_path: Path) -> None:
    """intel_iommu=off leaves the DMAR units and their interrupt remapping, without IOMMU groups."""
    result = _check(
        tmp_path,
        "interrupt_remapping",
        groups=False,
        cmdline="intel_iommu=off",
        files={"/sys/class/iommu/dmar0/intel-iommu/ecap": ECAP_WITH_INTREMAP + "\n"},
        dmesg=["DMAR-IR: Enabled IRQ remapping in x2apic mode"],
    )
    _expect(result, "PASS", "interrupt remapping is enabled")


def test_iommu_units_of_another_kind_pass_without_dmar_or_ivrs(tmp_path: Path) -> None:
    """A virtio-iommu (QEMU -device virtio-iommu-pci) registers a unit but no DMAR or IVRS table."""
    result = _check(
        tmp_path,
        "iommu_firmware",
        vendor="none",
        groups=False,
        files={"/sys/class/iommu/0000:00:03.0/uevent": ""},
    )
    assert result.name == "iommu_firmware", result.name
    assert result.explain() == (
        "Checking for an IOMMU in firmware (ACPI DMAR / IVRS): PASS - IOMMU units registered by the kernel "
        "(unknown)\n"
        "  evidence: /sys/firmware/acpi/tables: APIC, DSDT, FACP, MCFG\n"
        "  evidence: /sys/class/iommu: 0000:00:03.0 (other)"
    ), result.explain()


def test_cpu_flags_evidence_names_each_virtualization_flag(tmp_path: Path) -> None:
    result = _check(tmp_path, "hardware_virtualization", flags="fpu vmx svm hypervisor")
    assert result.evidence[0] == "/proc/cpuinfo flags: vmx, svm; hypervisor (a virtual machine)", (
        result.explain()
    )
