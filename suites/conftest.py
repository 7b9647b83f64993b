"""The suites need the harness plugin, write their JUnit report into the harness report folder, and run installed.

Installed from a wheel, this folder is the package ``hostdev_harness_suites``; the suites' own imports
name it ``suites`` (as in a checkout), so that name is made to point at the installed package.

The hotplug suite's answering guest (a Debian kernel booting under TCG, minutes when nested) starts with the
first test of the session and the hotplug tests run last, so its boot overlaps every other suite.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.changes.guests import DefinedGuest
from harness.changes.protocol import HostChanges
from harness.guest.image import GUEST_IMAGE_ENV, GuestImage
from harness.guest.machine import AnsweringGuest, answering_guest_machine
from harness.guest.protocol import GuestConsole, fresh_serial_log
from harness.plugin.devices import allowlist
from harness.plugin.options import options
from harness.xml.domain import DomainType

if __package__ and __package__ != "suites":  # installed: make ``from suites.steps import ...`` work
    sys.modules.setdefault("suites", importlib.import_module(__package__))

from suites.steps import RecordProperty, StepLog  # after the alias above

# The pytest11 entry point's name (pyproject.toml), or the module's when loaded with -p harness.plugin.
HARNESS_PLUGIN_NAMES = ("harness", "harness.plugin")
HOTPLUG_MODULE = "test_hotplug.py"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not any(config.pluginmanager.has_plugin(name) for name in HARNESS_PLUGIN_NAMES):
        raise pytest.UsageError(
            "hostdev-harness: the suites need the harness plugin, which -p no:harness turned off; run without it"
        )
    if config.option.xmlpath is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(options(config).report_dir / "junit.xml")


@pytest.fixture
def log(record_property: RecordProperty) -> Iterator[StepLog]:
    """The test's steps, each with its virsh command and time; published as JUnit properties at the end."""
    steps = StepLog(record_property)
    yield steps
    steps.publish()


def _is_hotplug(item: pytest.Item) -> bool:
    return item.path.name == HOTPLUG_MODULE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Hotplug tests last: the answering guest boots meanwhile."""
    items.sort(key=_is_hotplug)  # stable: every other test keeps its order


@pytest.fixture(scope="session")
def harness_guest_image(pytestconfig: pytest.Config) -> GuestImage:
    location = options(pytestconfig).guest_image
    if not location:
        pytest.skip(
            f"no answering guest image (--harness-guest-image or ${GUEST_IMAGE_ENV}; the lab sets it): "
            "a live detach cannot be proved without a guest OS"
        )
    return GuestImage.load(Path(location))


@pytest.fixture(scope="session")
def harness_answering_guest(
    harness_changes: HostChanges,
    harness_guest_image: GuestImage,
    harness_guest_type: DomainType,
) -> Iterator[AnsweringGuest]:
    """Started, not necessarily booted yet: ``AnsweringGuest.wait_booted`` waits for its first report."""
    name = f"hostdev-harness-hotplug-{uuid.uuid4().hex[:6]}"
    machine = answering_guest_machine(harness_guest_image, name, harness_guest_type)
    assert machine.serial is not None
    fresh_serial_log(machine)
    # Persistent, so --config changes apply; the change's undo destroys and undefines it.
    with harness_changes.holding(DefinedGuest(name, machine.to_xml())) as defined:
        domain = defined.domain(harness_changes.context)
        domain.create()
        yield AnsweringGuest(domain, machine, GuestConsole(Path(machine.serial.path)), time.time())
    with contextlib.suppress(OSError):
        Path(machine.serial.path).unlink()


@pytest.fixture(scope="session", autouse=True)
def _answering_guest_boots_early(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> None:
    """Start the answering guest with the session when hotplug tests will run; a failure to start is
    reported by those tests (pytest keeps a session fixture's error), never by an unrelated first test."""
    # An xdist worker collects every test but runs only some: it starts a guest only when one needs it.
    wanted = not hasattr(pytestconfig, "workerinput") and any(_is_hotplug(i) for i in request.session.items)
    if wanted and allowlist(pytestconfig) and options(pytestconfig).guest_image:
        with contextlib.suppress(Exception, pytest.skip.Exception, pytest.fail.Exception):
            request.getfixturevalue("harness_answering_guest")
