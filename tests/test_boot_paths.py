"""The next boot as each boot loader sees it: the shell evaluation of GRUB's defaults (checked against bash
itself), misspelled keys, the last switch winning, and the boot path found for each kind of host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.host.bootloader import BootPath, CommandLine, read_boot_configuration
from harness.host.root import HostRoot
from harness.host.shellvars import Origin, ShellVariables, Word
from tests.synthetic_hosts import FIXTURES

CMDLINE = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")


def _evaluate(*files: str) -> ShellVariables:
    variables = ShellVariables()
    for number, text in enumerate(files):
        variables.source(f"/f{number}", text)
    return variables


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (['GRUB_CMDLINE_LINUX="rhgb quiet intel_iommu=on iommu=pt"\n'], "rhgb quiet intel_iommu=on iommu=pt"),
        (["GRUB_CMDLINE_LINUX='a $b \"c\"'\n"], 'a $b "c"'),
        (['A=x\nGRUB_CMDLINE_LINUX="$A ${A}y"\n'], "x xy"),
        (["GRUB_CMDLINE_LINUX=a\\ b\"c\"'d'\n"], "a bcd"),
        (['GRUB_CMDLINE_LINUX="one \\\n two"\n'], "one  two"),
        (['GRUB_CMDLINE_LINUX="multi\nline"\n'], "multi\nline"),
        (['export GRUB_CMDLINE_LINUX="e"  # comment\n'], "e"),
        (["A=1 GRUB_CMDLINE_LINUX=2; B=3\n"], "2"),
        (['GRUB_CMDLINE_LINUX="x"\n', 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX y"\n'], "x y"),
        (['GRUB_CMDLINE_LINUX="x"\n', "GRUB_CMDLINE_LINUX=\n"], ""),
        (['GRUB_CMDLINE_LINUX="$UNSET x"\n'], " x"),
        (['GRUB_CMDLINE_LINUX="a $ b"\n'], "a $ b"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_shell_evaluation(files: list[str], expected: str) -> None:
    assert _evaluate(*files).text("GRUB_CMDLINE_LINUX") == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('GRUB_CMDLINE_LINUX="$(cat /etc/args)"\n', "command substitution"),
        ("GRUB_CMDLINE_LINUX=`cat /etc/args`\n", "command substitution"),
        ('GRUB_CMDLINE_LINUX="${X/a/b}"\n', "expansion"),
        ('GRUB_CMDLINE_LINUX="${X:?unset}"\n', "expansion"),
        ('GRUB_CMDLINE_LINUX="${X#*a}"\n', "pattern"),
        ("rm -rf /\n", "a command"),
        ("GRUB_CMDLINE_LINUX=x cmd\n", "a command"),
        ('GRUB_CMDLINE_LINUX="unterminated\n', "unterminated"),
    ],
)
def test_what_is_not_evaluated_is_recorded_and_sets_nothing(text: str, why: str) -> None:
    variables = _evaluate('GRUB_CMDLINE_LINUX="kept"\n', text)
    assert variables.text("GRUB_CMDLINE_LINUX") == "kept", "an unevaluated line must not change a variable"
    assert [(u.origin, why in u.why) for u in variables.unevaluated] == [(Origin("/f1", 1), True)], variables


def test_words_remember_the_file_and_line_they_were_written_in() -> None:
    variables = _evaluate(
        'GRUB_CMDLINE_LINUX="intel_iommu=on"\n',
        '\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX intel_iommu=off"\n',
    )
    assert variables.words(*CMDLINE) == [
        Word("intel_iommu=on", Origin("/f0", 1)),
        Word("intel_iommu=off", Origin("/f1", 2)),
    ]


GRUB_FIXTURES = sorted(
    path
    for path in FIXTURES.glob("*/etc/default/grub*")
    if path.is_file() or path.is_dir()  # /etc/default/grub and /etc/default/grub.d
)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to compare the evaluator with")
@pytest.mark.parametrize("snapshot", sorted({p.parents[2].name for p in GRUB_FIXTURES}))
def test_evaluator_agrees_with_bash_on_the_committed_fixtures(snapshot: str, tmp_path: Path) -> None:
    """bash sources our own fixture files (never a host's) in an empty environment, as grub-mkconfig does."""
    root = HostRoot(FIXTURES / snapshot)
    config = read_boot_configuration(root)
    files = [str(root.resolve(path)) for path in config.files_read if path.startswith("/etc/")]
    script = (
        "set -a; "
        + "; ".join(f". '{path}'" for path in files)
        + '; printf "%s\\n" "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"'
    )
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        env={"PATH": os.defpath},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [line for line in config.sources if line.where != "/etc/kernel/cmdline"]
    assert ours, f"{snapshot}: no GRUB defaults were evaluated from {files}"
    assert result.stdout.split() == ours[0].arguments, (
        f"{snapshot}: bash says {result.stdout.split()}, the evaluator {ours[0].arguments}; files {files}"
    )


@pytest.mark.parametrize(
    "key",
    [
        "GRUB_CMDLINX_LINUX",
        "GRUB_CMDLINE_LINUX_DEFUALT",
        "GRUP_CMDLINE_LINUX",
        "grub_cmdline_linux",
        "GRUB_CMD_LINE_LINUX",
    ],
)
def test_misspelled_command_line_keys_are_found_whatever_their_prefix(key: str, tmp_path: Path) -> None:
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_text(
        f'GRUB_TIMEOUT=5\nGRUB_DISABLE_RECOVERY=true\n{key}="intel_iommu=on"\n'
    )
    config = read_boot_configuration(HostRoot(tmp_path))
    assert [(m.origin, m.key) for m in config.misspellings] == [(Origin("/etc/default/grub", 3), key)], (
        f"{key} should be the one misspelling; found {config.misspellings}"
    )


def test_known_grub_keys_are_not_misspellings(tmp_path: Path) -> None:
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_text(
        'GRUB_CMDLINE_LINUX_RECOVERY="single"\nGRUB_CMDLINE_XEN=""\nGRUB_CMDLINE_LINUX=""\nGRUB_TIMEOUT=1\n'
    )
    assert read_boot_configuration(HostRoot(tmp_path)).misspellings == []


def _line(text: str) -> CommandLine:
    return CommandLine("t", tuple(Word(w, Origin("/t", 1)) for w in text.split()))


@pytest.mark.parametrize(
    ("text", "on"),
    [
        ("intel_iommu=on", True),
        ("intel_iommu=on intel_iommu=off", False),
        ("intel_iommu=off intel_iommu=on", True),
        ("intel_iommu=on,sm_on", True),
        ("intel_iommu=igfx_off", False),
        ("quiet", False),
    ],
)
def test_the_last_switch_wins(text: str, on: bool) -> None:
    assert _line(text).switched_on("intel_iommu=on") is on


@pytest.mark.parametrize(
    ("snapshot", "path", "where"),
    [
        ("synthetic-ubuntu-grub-d-undoes", BootPath.GRUB_DEBIAN, "/boot/grub/grub.cfg line 3"),
        (
            "synthetic-rhel9-bls",
            BootPath.GRUB_BLS,
            "/boot/loader/entries/4f1d2c7e9a8b4c3d-5.14.0-427.el9.x86_64.conf",
        ),
        ("synthetic-rhel8-kernelopts", BootPath.GRUB_BLS, "4.18.0-553.el8_10.x86_64.conf"),
        ("synthetic-systemd-boot", BootPath.SYSTEMD_BOOT, "/boot/efi/loader/entries/"),
        ("synthetic-intel-iommu-on", BootPath.GRUB_DEBIAN, None),
        ("debian12-virtio", BootPath.UNKNOWN, None),
    ],
)
def test_boot_path_and_default_entry(snapshot: str, path: BootPath, where: str | None) -> None:
    config = read_boot_configuration(HostRoot(FIXTURES / snapshot))
    assert config.path is path, f"{snapshot}: expected {path}, found {config.path} (read {config.files_read})"
    if where is None:
        assert config.next_boot is None
    else:
        assert config.next_boot is not None and where in config.next_boot.where, config.next_boot


def test_rhel8_kernelopts_come_from_grubenv_with_their_line() -> None:
    config = read_boot_configuration(HostRoot(FIXTURES / "synthetic-rhel8-kernelopts"))
    assert config.next_boot is not None
    assert config.next_boot.arguments == [
        "root=/dev/mapper/rhel-root",
        "ro",
        "crashkernel=auto",
        "rhgb",
        "quiet",
    ]
    assert config.next_boot.words[0].origin == Origin("/boot/grub2/grubenv", 2)


def _tree(root: Path, files: dict[str, str]) -> HostRoot:
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return HostRoot(root)


def test_systemd_boot_follows_loader_conf_default_pattern(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/efi/loader/loader.conf": "default old-*\n",
            "/efi/loader/entries/new-6.12.conf": "options root=/dev/vda1 intel_iommu=on\n",
            "/efi/loader/entries/old-6.1.conf": "options root=/dev/vda1\n",
        },
    )
    config = read_boot_configuration(root)
    assert config.path is BootPath.SYSTEMD_BOOT and config.next_boot is not None
    assert config.next_boot.where == "/efi/loader/entries/old-6.1.conf", config.next_boot
    assert config.regenerate_command().startswith("kernel-install add")


def test_bls_entries_without_saved_entry_boot_the_newest_version(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/etc/default/grub": 'GRUB_CMDLINE_LINUX="quiet"\n',
            "/boot/grub2/grubenv": "# GRUB Environment Block\n",
            "/boot/loader/entries/m-5.14.0-9.el9.x86_64.conf": "options a\n",
            "/boot/loader/entries/m-5.14.0-10.el9.x86_64.conf": "options b\n",
        },
    )
    config = read_boot_configuration(root)
    assert config.next_boot is not None and config.next_boot.arguments == ["b"], config.next_boot
    assert config.add_command("x=1") == 'grubby --update-kernel=ALL --args="x=1"'
    assert config.remove_command("x=1") == 'grubby --update-kernel=ALL --remove-args="x=1"'


def test_grub2_without_bls_entries_reads_grub_cfg(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/etc/default/grub": 'GRUB_CMDLINE_LINUX="intel_iommu=on"\n',
            "/boot/grub2/grub.cfg": "menuentry 'x' {\n\tlinux16 /vmlinuz-3.10 root=/dev/sda1 ro intel_iommu=on\n}\n",
        },
    )
    config = read_boot_configuration(root)
    assert config.path is BootPath.GRUB_BLS and config.next_boot is not None
    assert config.next_boot.arguments == ["root=/dev/sda1", "ro", "intel_iommu=on"]
    assert config.next_boot.words[0].origin == Origin("/boot/grub2/grub.cfg", 2)
