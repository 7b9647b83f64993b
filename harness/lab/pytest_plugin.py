"""The nested tier's pytest plugin: booted labs as fixtures, and markers that say which lab and devices a test needs.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); labgrid's ``pytestplugin`` (``lg_feature``) is the model.

- ``default_lab``: ``fixtures/labs/default.toml``, booted once per session.
- ``lab``: the lab of the test's module, booted once per module: the spec its ``harness_lab_spec`` marker
  names (``pytestmark = pytest.mark.harness_lab_spec("isolation")``), else the session's default lab.
- ``boot_lab``: ``with boot_lab("no-iommu") as lab:`` for a fixture of its own (a parametrized fault lab).
- ``@pytest.mark.harness_lab_device("igb")``: skip the test when its lab booted without such a device (an id,
  a kind or a QEMU model), naming what is missing and why.

Every lab booted here has a name unique to this test process (:func:`lab_name`), so two test runs (or a
developer's own ``hostdev-lab up``) never collide; each is stopped at the end even if the test fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.lab.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from harness.lab.lab import Lab

LABS = PROJECT_ROOT / "fixtures" / "labs"
DEFAULT_SPEC = "default"
SPEC_MARKER = "harness_lab_spec"
DEVICE_MARKER = "harness_lab_device"

BootLab = Callable[[str], contextlib.AbstractContextManager["Lab"]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SPEC_MARKER}(spec): the lab spec (fixtures/labs/SPEC.toml) the module's `lab` fixture boots",
    )
    config.addinivalue_line(
        "markers",
        f"{DEVICE_MARKER}(*devices): skip unless the test's lab has each device (an id, kind or QEMU model)",
    )


def lab_name(label: str) -> str:
    """A lab name unique to this test process."""
    return f"t{os.getpid()}-{label}"


def spec_path(spec: str) -> Path:
    """``isolation`` or ``isolation.toml``: a spec in fixtures/labs/; anything with a slash: that file."""
    if "/" in spec:
        return Path(spec)
    return LABS / (spec if spec.endswith(".toml") else f"{spec}.toml")


@contextlib.contextmanager
def _booted(spec: str) -> Iterator[Lab]:
    from harness.lab.lab import booted_lab  # the fast tier loads this plugin too: no lab import up front

    with booted_lab(spec_path(spec), name=lab_name(Path(spec).stem)) as lab:
        yield lab


@pytest.fixture(scope="session")
def boot_lab() -> BootLab:
    return _booted


@pytest.fixture(scope="session")
def default_lab() -> Iterator[Lab]:
    with _booted(DEFAULT_SPEC) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    marker = request.node.get_closest_marker(SPEC_MARKER)
    spec = marker.args[0] if marker is not None else DEFAULT_SPEC
    if spec == DEFAULT_SPEC:
        yield request.getfixturevalue("default_lab")  # the session's lab: no second boot
        return
    with _booted(spec) as booted:
        yield booted


def missing_devices(lab: Lab, wanted: tuple[str, ...]) -> list[str]:
    """What of ``wanted`` the lab lacks, each with why when the lab says (a device it booted without)."""
    missing = []
    for want in wanted:
        if any(want in (device.id, device.kind, device.model) for device in lab.devices):
            continue
        why = lab.skipped_reasons.get(want) or lab.skipped_summary
        missing.append(f"{want} ({why})" if why else want)
    return missing


@pytest.fixture(autouse=True)
def _skip_without_lab_devices(request: pytest.FixtureRequest) -> None:
    wanted = tuple(arg for marker in request.node.iter_markers(DEVICE_MARKER) for arg in marker.args)
    if not wanted:
        return
    fixture = next((name for name in ("lab", "default_lab") if name in request.fixturenames), None)
    if fixture is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: {DEVICE_MARKER} needs a `lab` or `default_lab` fixture"
        )
    booted: Lab = request.getfixturevalue(fixture)
    if missing := missing_devices(booted, wanted):
        pytest.skip(f"lab {booted.name} has no {', '.join(missing)}")
