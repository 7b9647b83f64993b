"""Lab state is namespaced per user and checkout; an installed harness writes nothing into site-packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.lab import paths
from harness.lab.lab import list_labs


def test_state_root_is_per_user_and_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.STATE_ENV, raising=False)
    mine = paths.state_root()
    assert mine.name == paths.lab_namespace()
    monkeypatch.setattr(paths, "PROJECT_ROOT", Path("/somewhere/else"))
    assert paths.state_root() != mine, "another checkout must get another state root"


def test_down_all_sees_only_the_callers_labs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`hostdev-lab down --all` stops what list_labs() lists: labs of another namespace are not listed."""
    monkeypatch.delenv(paths.STATE_ENV, raising=False)
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr("harness.lab.paths.os.access", lambda *_: False)  # not /run: the cache state folder
    root = paths.state_root()
    assert root.is_relative_to(tmp_path / "state")
    other = tmp_path / "state" / "someone-else-0000abcd" / "theirs"
    other.mkdir(parents=True)
    (other / "lab.json").write_text(json.dumps({"name": "theirs"}))
    assert list_labs() == []


def test_installed_harness_keeps_out_of_site_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    (site / "harness").mkdir(parents=True)
    monkeypatch.setattr(paths, "PROJECT_ROOT", site)
    for name in (paths.CACHE_ENV, paths.STATE_ENV, paths.REPORTS_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not paths.running_from_checkout()
    for where in (paths.cache_dir(), paths.reports_dir()):
        assert not where.is_relative_to(site), f"{where} is inside site-packages"
    assert paths.reports_dir() == tmp_path / "reports"
