"""How much of a test × device matrix a run covers: the full cross product, or a covering selection.

A suite parametrized over devices (``@pytest.mark.harness_matrix("address")``) runs every test on every
allowlisted device by default: what a certification run wants. ``--harness-matrix=cover`` keeps each test
variant once and each device at least once (test k on device k mod n, then any device left over on its
first test), which is what a quick run on a slow nested host can afford. The deselected runs are reported
through pytest's own ``pytest_deselected`` hook, and the terminal says what was left out and how to get it.
"""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from harness.plugin.options import options


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "harness_matrix(axis): the parameter whose values are devices; --harness-matrix=cover runs each test "
        "once and each device at least once",
    )


def _axis(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("harness_matrix")
    if marker is None or not marker.args:
        return None
    axis = str(marker.args[0])
    callspec = getattr(item, "callspec", None)
    return axis if callspec is not None and axis in callspec.params else None


def _variant(item: pytest.Item, axis: str) -> Hashable:
    """The test and its other parameters: each variant of a test is kept once."""
    params = item.callspec.params  # type: ignore[attr-defined]
    others = tuple(sorted((name, repr(value)) for name, value in params.items() if name != axis))
    return (item.nodeid.split("[", 1)[0], others)


def covering_selection(items: list[pytest.Item]) -> list[pytest.Item]:
    """The items of a covering selection: every variant once, every device value at least once."""
    variants: dict[Hashable, list[pytest.Item]] = {}
    devices: list[str] = []
    for item in items:
        axis = _axis(item)
        if axis is None:
            continue
        variants.setdefault(_variant(item, axis), []).append(item)
        device = repr(item.callspec.params[axis])  # type: ignore[attr-defined]
        if device not in devices:
            devices.append(device)
    keep: set[int] = set()
    covered: set[str] = set()

    def device_of(item: pytest.Item) -> str:
        return repr(item.callspec.params[_axis(item) or ""])  # type: ignore[attr-defined]

    for index, runs in enumerate(variants.values()):
        wanted = devices[index % len(devices)]
        chosen = next((run for run in runs if device_of(run) == wanted), runs[0])
        keep.add(id(chosen))
        covered.add(device_of(chosen))
    for device in devices:
        if device not in covered:
            first = next(run for runs in variants.values() for run in runs if device_of(run) == device)
            keep.add(id(first))
            covered.add(device)
    return [item for item in items if _axis(item) is None or id(item) in keep]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if options(config).matrix != "cover":
        return
    selected = covering_selection(items)
    if len(selected) == len(items):
        return
    kept = {id(item) for item in selected}
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
    items[:] = selected


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    if options(config).matrix != "cover":
        return None
    return (
        "hostdev-harness: --harness-matrix=cover: each test once and each device at least once "
        "(--harness-matrix=full runs every test on every device)"
    )
