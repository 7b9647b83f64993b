"""Bad input to the command lines and the plugin: one clear line, the documented exit code, nothing deleted.

Every case of issue 10 runs as a subprocess, as a user would run it; generated bad inputs (arguments,
files, journals, specs, snapshots) run in-process through ``main`` with everything that could change
this machine (a lab boot, a libvirt connection for restore) replaced by a tripwire.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli as harness_cli
from harness.changes import protocol as harness_changes
from harness.command import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, run_command
from harness.errors import EXIT_INTERNAL, EXIT_USAGE
from harness.lab import cli as lab_cli
from tests.synthetic_hosts import FIXTURES

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAPSHOT = FIXTURES / "synthetic-intel-iommu-on"


def tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` with its content: compared before and after, so nothing may be deleted."""
    if path.is_file():
        return {str(path): path.read_bytes()}
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_one_clear_line(stderr: str, prog: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{prog}: expected one stderr line, found {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith(f"{prog}: ") and "Traceback" not in line, f"not a {prog} message: {line}"
    for fragment in fragments:
        assert fragment in line, f"expected {fragment!r} in the message, found: {line}"
    return line


def run(*argv: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_PROGRESS": "off"}
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


# --- every case the issue lists, as a subprocess ----------------------------------------------------


def test_snapshot_onto_an_existing_file_is_refused_and_keeps_it(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("a user's file\n")
    result = run("hostdev-harness", "snapshot", str(precious))
    assert result.returncode == EXIT_USAGE
    assert_one_clear_line(result.stderr, "hostdev-harness", "is not a directory")
    assert precious.read_text() == "a user's file\n"


def test_snapshot_into_a_non_empty_folder_is_refused_even_with_force(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "data.txt").write_text("keep me\n")
    before = tree(folder)
    for extra in ((), ("--force",)):
        result = run("hostdev-harness", "snapshot", *extra, str(folder))
        assert result.returncode == EXIT_USAGE, result.stderr
        assert_one_clear_line(result.stderr, "hostdev-harness", "not empty", "nothing was changed")
        assert tree(folder) == before


def test_restore_with_a_directory_as_journal(tmp_path: Path) -> None:
    (tmp_path / "kept").write_text("x")
    result = run("hostdev-harness", "restore", "--journal", str(tmp_path))
    assert result.returncode == EXIT_USAGE
    assert_one_clear_line(result.stderr, "hostdev-harness", "is a directory")
    assert (tmp_path / "kept").read_text() == "x"


@pytest.mark.parametrize(
    "record",
    [
        '{"id": "x", "action": "detach"}',  # a record without its device
        '{"id": 1, "action": "detach", "device": "0000:01:00.0", "before": "e1000e"}',
        "[1, 2, 3]",
    ],
)
def test_restore_with_a_malformed_journal_record(tmp_path: Path, record: str) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text(record + "\n")
    result = run("hostdev-harness", "restore", "--journal", str(journal))
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_one_clear_line(result.stderr, "hostdev-harness", str(journal))
    assert journal.read_text() == record + "\n"


def test_lab_up_with_a_directory(tmp_path: Path) -> None:
    result = run("hostdev-lab", "up", str(tmp_path))
    assert result.returncode == EXIT_USAGE
    assert_one_clear_line(result.stderr, "hostdev-lab", "is a directory")


def test_lab_up_with_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    spec = tmp_path / "lab.toml"
    spec.write_bytes(b"\xff\xfe name = 1")
    result = run("hostdev-lab", "up", str(spec))
    assert result.returncode == EXIT_USAGE
    assert_one_clear_line(result.stderr, "hostdev-lab", "not UTF-8")


@pytest.mark.parametrize("command", ["check", "inventory"])
def test_output_into_a_closed_pipe_is_quiet(command: str) -> None:
    process = subprocess.Popen(
        [str(BIN / "hostdev-harness"), command, "--json", "--snapshot", str(SNAPSHOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away before the first line, as `| head -0` would
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == EXIT_BROKEN_PIPE, stderr
    assert stderr == "", f"expected silence on a closed pipe, found:\n{stderr}"


@pytest.mark.parametrize("not_a_snapshot", ["/nonexistent", "{tmp}", "{tmp}/file"])
def test_not_a_snapshot_is_refused_by_the_cli(tmp_path: Path, not_a_snapshot: str) -> None:
    (tmp_path / "file").write_text("x")
    path = not_a_snapshot.format(tmp=tmp_path)
    result = run("hostdev-harness", "check", "--snapshot", path)
    assert result.returncode == EXIT_USAGE
    assert_one_clear_line(result.stderr, "hostdev-harness", path, "hostdev-harness snapshot DIR")


def _pytest_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, f"expected one usage error line, found:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("not_a_snapshot", ["/nonexistent", "{tmp}"])
def test_not_a_snapshot_is_a_usage_error_for_pytest(tmp_path: Path, not_a_snapshot: str) -> None:
    path = not_a_snapshot.format(tmp=tmp_path)
    result = run("pytest", "suites", f"--harness-snapshot={path}", f"--harness-report-dir={tmp_path}")
    _pytest_usage_error(result, "hostdev-harness:", path)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_bad_planned_devices_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run(
        "pytest",
        "suites/test_preparation.py",
        f"--harness-snapshot={SNAPSHOT}",
        f"--harness-report-dir={tmp_path}",
        "-o",
        f"harness_planned_devices={value}",
    )
    _pytest_usage_error(result, "harness_planned_devices")


def test_suites_without_the_plugin_say_so() -> None:
    result = run("pytest", "-p", "no:harness", "suites", "--co", "-q")
    _pytest_usage_error(result, "-p no:harness")


def test_keyboard_interrupt_is_130_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_command("hostdev-harness", interrupted) == EXIT_INTERRUPTED
    assert_one_clear_line(capsys.readouterr().err, "hostdev-harness", "interrupted")


def test_a_bug_is_exit_3_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def buggy() -> int:
        return int("not a number")

    assert run_command("hostdev-harness", buggy) == EXIT_INTERNAL
    assert_one_clear_line(capsys.readouterr().err, "hostdev-harness", "internal error", "HARNESS_DEBUG=1")


def test_ctrl_c_during_a_command_exits_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while `validate` runs pytest."""
    process = subprocess.Popen(
        [
            str(BIN / "hostdev-harness"),
            "validate",
            "--snapshot",
            str(SNAPSHOT),
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # pytest has started
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, out[-2000:] + err
    assert "Traceback" not in err


# --- generated bad inputs, in-process ---------------------------------------------------------------


class Tripwire(BaseException):
    """Raised where a bad input would have gone on to change something (a BaseException: no handler catches it)."""


def _call(main: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)  # type: ignore[operator]
    return code, capsys.readouterr().err


texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
file_bytes = st.one_of(
    st.binary(max_size=200),
    texts.map(str.encode),
    st.sampled_from(
        [b"", b"\xff\xfe", b"{", b"[", b"null", b'{"id": 1}', b'name = "x"\n[machine]\ncpus = "two"\n']
    ),
)
GENERATED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@GENERATED
@given(
    command=st.sampled_from(["check", "inventory"]),
    options=st.lists(
        st.tuples(st.sampled_from(["--refuse", "--planned-devices", "--uri", "--bogus", ""]), texts),
        max_size=3,
    ),
)
def test_generated_arguments(
    command: str, options: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Random option values against a directory that is not a snapshot: always exit 2, one line."""
    argv = [command, "--snapshot", str(tmp_path)]
    for flag, value in options:
        if flag == "--planned-devices" and command != "check":
            continue
        argv += [flag, value] if flag else [value]
    code, err = _call(harness_cli.main, argv, capsys)
    assert code == EXIT_USAGE, f"{argv}: exit {code}\n{err}"
    assert_one_clear_line(err, "hostdev-harness")


def _call_until_tripwire(
    main: object, argv: list[str], capsys: pytest.CaptureFixture[str], module: object, name: str
) -> tuple[int, str] | None:
    """``main(argv)`` with ``module.name`` (what would change this machine) a tripwire; None if it was reached."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, name, _tripwire)
        patch.setattr(signal, "signal", lambda *_: None)  # hostdev-lab installs handlers: not in this process
        try:
            return _call(main, argv, capsys)
        except Tripwire:
            return None


@GENERATED
@given(content=file_bytes)
def test_generated_journals(content: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A journal the reader rejects is exit 2; one it accepts never reaches this machine's libvirt here."""
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(content)
    argv = ["restore", "--journal", str(journal)]
    outcome = _call_until_tripwire(harness_cli.main, argv, capsys, harness_changes, "recover")
    if outcome is not None:  # None: entries of a dead owner to undo, a valid journal and not a bad input
        code, err = outcome
        assert code in (0, EXIT_USAGE), f"exit {code} for journal {content!r}\n{err}"
        if code == EXIT_USAGE:
            assert_one_clear_line(err, "hostdev-harness", str(journal))
    assert journal.read_bytes() == content


@GENERATED
@given(content=file_bytes)
def test_generated_lab_specs(content: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "lab.toml"
    spec.write_bytes(content)
    outcome = _call_until_tripwire(lab_cli.main, ["up", str(spec)], capsys, lab_cli, "start_lab")
    if outcome is None:
        return  # a spec the loader accepts (an empty file is the default lab): no lab is booted here
    code, err = outcome
    assert code == EXIT_USAGE, f"exit {code} for spec {content!r}\n{err}"
    assert_one_clear_line(err, "hostdev-lab", str(spec))


@GENERATED
@given(manifest=file_bytes)
def test_generated_snapshot_manifests(
    manifest: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A folder with a broken or foreign manifest is not a snapshot."""
    (tmp_path / ".harness").mkdir(exist_ok=True)
    (tmp_path / ".harness" / "manifest.json").write_bytes(manifest)
    code, err = _call(harness_cli.main, ["check", "--snapshot", str(tmp_path)], capsys)
    assert code == EXIT_USAGE, f"exit {code} for manifest {manifest!r}\n{err}"
    assert_one_clear_line(err, "hostdev-harness", str(tmp_path))


def _tripwire(*_args: object, **_kwargs: object) -> None:
    raise Tripwire


def test_a_valid_snapshot_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The refusals above must not refuse a real snapshot."""
    code, _ = _call(harness_cli.main, ["check", "--json", "--snapshot", str(SNAPSHOT)], capsys)
    assert code == 0
    manifest = json.loads((SNAPSHOT / ".harness/manifest.json").read_text())
    assert manifest["format"] == "hostdev-harness-snapshot"


@pytest.mark.parametrize("name", ["nosuch", ""])
def test_validate_names_an_unknown_suite_and_lists_the_suites(name: str) -> None:
    result = run("hostdev-harness", "validate", "--suite", name)
    assert result.returncode == 2, result
    assert_one_clear_line(result.stderr, "hostdev-harness", f"no shipped suite named {name!r}", "preparation")


# --- options given empty, twice, or with a value nothing reads (issue 18) -------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("check", "--uri", ""), "--uri is empty"),
        (("inventory", "--snapshot", "  "), "--snapshot is empty"),
        (("restore", "--journal", ""), "--journal is empty"),
        (("check", "--snapshot", str(SNAPSHOT), "--snapshot", str(SNAPSHOT)), "--snapshot was given twice"),
        (("inventory", "--uri", "test:///default", "--uri", "qemu:///system"), "--uri was given twice"),
        (("restore", "--journal", "/tmp/a", "--journal", "/tmp/b"), "--journal was given twice"),
        (("validate", "--report-dir", "a", "--report-dir", "b"), "--report-dir was given twice"),
        (("validate", "--snapshot", str(SNAPSHOT), "--", "--harness-report-dir=x"), "set by validate itself"),
        (("validate", "--", "--harness-snapshot", str(SNAPSHOT)), "use validate's --snapshot"),
        (("merge", "--output", "", "x.json"), "--output is empty"),
    ],
)
def test_an_option_given_empty_or_twice_is_a_usage_error(
    argv: tuple[str, ...], fragment: str, tmp_path: Path
) -> None:
    # In tmp_path: nothing a refused command might have written can land in the checkout.
    result = run("hostdev-harness", *argv, cwd=tmp_path)
    assert result.returncode == EXIT_USAGE, (
        f"{argv}: expected exit 2, found {result.returncode}: {result.stderr}"
    )
    assert_one_clear_line(result.stderr, "hostdev-harness", fragment)
    assert list(tmp_path.iterdir()) == [], f"{argv} wrote {list(tmp_path.iterdir())} although refused"


@pytest.mark.parametrize(
    ("extra", "env", "fragment"),
    [
        (("--harness-cycles", "0"), {}, "--harness-cycles 0"),
        (("--harness-cycles=-3",), {}, "--harness-cycles -3"),
        (("--harness-uri=",), {}, "--harness-uri is empty"),
        (("--harness-journal=",), {}, "--harness-journal is empty"),
        ((), {"HARNESS_GUEST_TYPE": "xen"}, "HARNESS_GUEST_TYPE='xen'"),
        (("--hypothesis-profile", "nosuch"), {}, "'nosuch' is not a profile"),
    ],
)
def test_a_bad_plugin_option_is_a_usage_error(
    extra: tuple[str, ...], env: dict[str, str], fragment: str, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    result = subprocess.run(
        [
            str(BIN / "pytest"),
            "suites/test_preparation.py",
            f"--harness-snapshot={SNAPSHOT}",
            f"--harness-report-dir={reports}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    _pytest_usage_error(result, fragment)
    assert not reports.exists(), "a refused run wrote reports"


def test_a_report_dir_that_is_a_file_is_refused_before_any_test(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("a user's file\n")
    result = run(
        "pytest",
        "suites/test_preparation.py",
        f"--harness-snapshot={SNAPSHOT}",
        f"--harness-report-dir={target}",
    )
    _pytest_usage_error(result, "is not a directory")
    assert "passed" not in result.stdout, f"tests ran before the refusal:\n{result.stdout[-800:]}"
    assert target.read_text() == "a user's file\n"


@pytest.mark.parametrize("version", ["true", "-3", "0", '"1"', "null"])
def test_a_manifest_version_that_is_not_a_version_is_refused(version: str, tmp_path: Path) -> None:
    snapshot = tmp_path / "snap"
    shutil.copytree(SNAPSHOT, snapshot, symlinks=True)
    manifest = snapshot / ".harness" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["version"] = json.loads(version)
    manifest.write_text(json.dumps(data))
    result = run("hostdev-harness", "check", "--snapshot", str(snapshot))
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_one_clear_line(result.stderr, "hostdev-harness", "manifest.json", "version")


@pytest.mark.parametrize("command", ["check", "inventory"])
def test_a_closed_stdout_is_one_line_and_exit_2(command: str) -> None:
    # ``cmd >&-`` in a shell: the command starts with file descriptor 1 closed.
    result = subprocess.run(
        [str(BIN / "hostdev-harness"), command, "--snapshot", str(SNAPSHOT)],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=REPO,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == EXIT_USAGE, f"expected exit 2 with stdout closed, found {result.returncode}"
    assert_one_clear_line(result.stderr, "hostdev-harness", "standard output is closed")


def test_ctrl_c_while_the_harness_is_imported_is_one_line_and_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.entry import run_entry

    # A module whose import is interrupted, as harness.cli's would be by a Ctrl-C while libvirt loads.
    (tmp_path / "slow_to_import.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_entry("slow_to_import", "hostdev-harness") == EXIT_INTERRUPTED
    assert_one_clear_line(capsys.readouterr().err, "hostdev-harness", "interrupted")


def test_the_console_scripts_go_through_the_entry_points() -> None:
    for prog in ("hostdev-harness", "hostdev-lab"):
        script = (BIN / prog).read_text()
        assert "harness.entry" in script, f"{BIN / prog} does not start through harness.entry:\n{script}"
