"""The plugin's fixtures: the host under test, its libvirt, the plan, the guard, the changes, the verdict."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import libvirt
import pytest

from harness.changes.guard import DeviceGuard
from harness.changes.journal import ChangeJournal, Owner
from harness.changes.leases import GroupLeases
from harness.changes.protocol import ChangeContext, HostChanges
from harness.checks.preparation import CheckPlan
from harness.checks.result import CheckResult, Verdict
from harness.host.host import Host
from harness.host.libvirt_facts import LibvirtFacts
from harness.libvirt.connection import LibvirtUnavailableError, open_connection
from harness.libvirt.daemon import PrivateLibvirtd, private_libvirtd_for
from harness.libvirt.facts import gather_libvirt_facts
from harness.libvirt.guests import choose_virt_type
from harness.opening import open_host
from harness.plugin.devices import allowlist
from harness.plugin.options import options, owner_key
from harness.report.properties import check_properties
from harness.xml.domain import DomainType


class HarnessWarning(UserWarning):
    """A preparation check ended in WARN."""


@pytest.fixture(scope="session")
def harness_uri(pytestconfig: pytest.Config) -> str:
    return options(pytestconfig).uri


@pytest.fixture(scope="session")
def harness_private_libvirtd(
    request: pytest.FixtureRequest, harness_uri: str
) -> Iterator[PrivateLibvirtd | None]:
    """A libvirtd of the run's own when none answers on this machine at the local system URI."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")

    @contextmanager
    def starting() -> Iterator[None]:
        if terminal is not None:
            terminal.write_line(
                f"hostdev-harness: starting a private libvirtd because none answers at {harness_uri}"
            )
        yield

    # Its own short state directory: a unix socket path may not exceed 107 bytes.
    with private_libvirtd_for(harness_uri, starting) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def harness_libvirt(
    harness_uri: str, harness_private_libvirtd: PrivateLibvirtd | None
) -> Iterator[libvirt.virConnect]:
    """A libvirt connection (``libvirt.virConnect``) to the host under test."""
    uri = harness_private_libvirtd.uri if harness_private_libvirtd else harness_uri
    try:
        connection = open_connection(uri)
    except LibvirtUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def harness_host(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config, harness_uri: str
) -> Iterator[Host]:
    """The host under test, opened like the CLI opens it: a snapshot, or this machine at the URI."""

    def libvirt_facts() -> LibvirtFacts:
        # The run's own connection, which the device changer shares, rather than a second one.
        try:
            return gather_libvirt_facts(request.getfixturevalue("harness_libvirt"))
        except pytest.fail.Exception as exc:
            return LibvirtFacts.unreachable(harness_uri, str(exc))

    run = options(pytestconfig)
    with open_host(run.snapshot, harness_uri, run.refuse, libvirt_facts=libvirt_facts) as host:
        yield host


@pytest.fixture(scope="session")
def harness_plan(pytestconfig: pytest.Config) -> CheckPlan:
    run = options(pytestconfig)
    return CheckPlan(
        planned_devices=max(run.planned_devices, len(run.allow)),
        guest_memory_mib=run.guest_memory_mib,
    )


@pytest.fixture(scope="session")
def harness_guard(harness_host: Host, pytestconfig: pytest.Config) -> DeviceGuard:
    return DeviceGuard(harness_host, allowlist(pytestconfig))


@pytest.fixture(scope="session")
def harness_journal(pytestconfig: pytest.Config) -> ChangeJournal:
    return ChangeJournal(options(pytestconfig).journal)


@pytest.fixture(scope="session")
def harness_owner(pytestconfig: pytest.Config) -> Owner:
    """Who this process's changes belong to: the run, the xdist worker, the process."""
    return pytestconfig.stash[owner_key]


@pytest.fixture(scope="session")
def harness_changes(
    request: pytest.FixtureRequest,
    harness_guard: DeviceGuard,
    harness_journal: ChangeJournal,
    harness_owner: Owner,
) -> Iterator[HostChanges]:
    """Makes this worker's changes; at the end undoes them (and only them, never a live owner's)."""
    if not harness_guard.host.root.is_live:
        pytest.skip("device changes need a live host, not a snapshot")
    connection = request.getfixturevalue("harness_libvirt")
    changes = HostChanges(
        ChangeContext(harness_guard.host.root, lambda: connection),
        harness_journal,
        harness_owner,
        harness_guard,
    )
    yield changes
    changes.undo_all()


@pytest.fixture(scope="session")
def harness_leases(pytestconfig: pytest.Config, harness_owner: Owner) -> GroupLeases:
    """IOMMU-group leases: a test holds the groups of the devices it changes, across workers and runs."""
    return GroupLeases(harness_owner, options(pytestconfig).lease_dir)


@pytest.fixture(scope="session")
def harness_guest_type(pytestconfig: pytest.Config, harness_host: Host) -> DomainType:
    return choose_virt_type(options(pytestconfig).guest_type, harness_host.kvm.usable)


@pytest.fixture
def harness_verdict(record_property: object, pytestconfig: pytest.Config) -> object:
    """Record a check result in JUnit and turn it into the test outcome (WARN fails only when strict)."""
    strict = options(pytestconfig).strict

    def verdict(result: CheckResult) -> None:
        for name, value in check_properties(result):
            record_property(name, value)  # type: ignore[operator]
        if result.verdict is Verdict.FAIL or (result.verdict is Verdict.WARN and strict):
            pytest.fail(result.explain(), pytrace=False)
        if result.verdict is Verdict.WARN:
            warnings.warn(HarnessWarning(result.explain()), stacklevel=2)

    return verdict
