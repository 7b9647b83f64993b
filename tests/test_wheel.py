"""`pip install` of the built wheel gives the plugin, both CLIs and the suites, and writes nothing into site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.synthetic_hosts import FIXTURES

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return next(dist.glob("hostdev_harness-*.whl"))


def test_wheel_holds_every_package_the_checkout_has(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(
        p.parent for p in (REPO / "harness").rglob("__init__.py") if "__pycache__" not in str(p)
    )
    for package in packages:
        init = f"{package.relative_to(REPO)}/__init__.py"
        assert init in names, f"{init} is missing from the wheel: add it to [tool.setuptools] packages"
    suites = {f"hostdev_harness_suites/{p.name}" for p in (REPO / "suites").glob("*.py")}
    assert suites <= names, f"suites missing from the wheel: {sorted(suites - names)}"
    assert any(name.startswith("hostdev_harness_suites/xml-corpus/valid/") for name in names)
    assert "harness/report/report-v1.schema.json" in names
    assert "harness/report/check-v1.schema.json" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)


def test_installed_wheel_validates_a_snapshot(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    for cli in ("hostdev-harness", "hostdev-lab"):
        version = subprocess.run([str(venv / "bin" / cli), "--version"], capture_output=True, text=True)
        assert version.stdout.strip() == f"{cli} 0.1.0", version.stdout + version.stderr
    work = tmp_path / "work"
    work.mkdir()
    snapshot = FIXTURES / "synthetic-intel-iommu-on"
    validate = [str(venv / "bin/hostdev-harness"), "validate", "--snapshot", str(snapshot), "--", "-q"]
    collected = subprocess.run([*validate, "--co"], cwd=work, capture_output=True, text=True, timeout=600)
    for module in ("preparation", "inventory", "assignment", "sriov", "xml_corpus", "xml_roundtrip"):
        assert f"test_{module}.py::" in collected.stdout, (
            f"test_{module}.py not collected:\n{collected.stdout[-3000:]}"
        )
    assert "test_xml_corpus.py::test_valid_document_round_trips_through_model[" in collected.stdout, (
        "the XML corpus did not ship with the suites"
    )
    # The host-model suites run in full; the XML suites' libvirt round trips are the slow part and are
    # exercised by `make validate` in the checkout.
    run = subprocess.run(
        [*validate, "-k", "preparation or inventory or assignment or corpus"],
        cwd=work, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, (
        f"validate in a fresh venv failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    )
    assert "passed" in run.stdout and "PytestAssertRewriteWarning" not in run.stdout + run.stderr
    for report in ("junit.xml", "report.json", "report.html", "summary.txt"):
        assert (work / "reports" / report).exists(), f"{report} not in {work / 'reports'}"
    site = next((venv / "lib").glob("python3*/site-packages"))
    strays = [p for p in site.iterdir() if p.name in ("reports", ".cache", ".hypothesis", ".pytest_cache")]
    assert not strays, f"the installed harness wrote into site-packages: {strays}"
