"""``hostdev-lab down`` never removes what the lab machinery did not create, and refuses bad names (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.lab.cli import main
from harness.lab.paths import STATE_ENV, STATE_MARKER
from harness.lab.spec import _ID_PATTERN

_LAB_JSON = {"name": "x", "ports": {"libvirtd": 1, "agent": 2}, "pid": None}


def _lab_dir(path: Path, *, marker: bool) -> Path:
    path.mkdir(parents=True)
    (path / "lab.json").write_text(json.dumps(_LAB_JSON))
    if marker:
        (path / STATE_MARKER).write_text("x\n")
    return path


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv(STATE_ENV, str(root))
    return root


@pytest.mark.parametrize("name", ["../victim", "victim\n", "ABS", "link", "nomarker", "corrupt", "..", "a/b"])
def test_down_refuses_and_removes_nothing(
    name: str, state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = _lab_dir(tmp_path / "victim", marker=True)
    (state / "link").symlink_to(victim)
    _lab_dir(state / "nomarker", marker=False)
    (state / "corrupt").mkdir()
    (state / "corrupt" / "lab.json").write_text("{garbage")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argument = str(victim) if name == "ABS" else name
    rc = main(["down", argument])
    err = capsys.readouterr().err
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert rc == 2, f"expected exit 2 for down {argument!r}, found {rc}; stderr: {err}"
    assert len(err.strip().splitlines()) == 1, f"expected one line, found: {err!r}"
    assert after == before, f"down {argument!r} removed {set(before) - set(after)}"


def test_down_removes_a_dir_it_created(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _lab_dir(state / "mine", marker=True)
    assert main(["down", "mine"]) == 0, capsys.readouterr().err
    assert not (state / "mine").exists()


def test_spec_name_pattern_refuses_trailing_newline() -> None:
    assert _ID_PATTERN.match("lab\n") is None
    assert _ID_PATTERN.match("lab") is not None


def test_no_project_regex_accepts_a_trailing_newline() -> None:
    # `$` matches before a final newline; every anchored pattern in harness/ must end with \Z.
    root = Path(__file__).resolve().parents[1] / "harness"
    offenders = [
        f"{path.relative_to(root.parent)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(f"re.{call}(" in line for call in ("match", "fullmatch", "compile"))
        and '$"' in line
        and "MULTILINE" not in line
    ]
    assert offenders == [], f"patterns anchored with $ (use \\Z): {offenders}"
