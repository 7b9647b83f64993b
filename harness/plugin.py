"""The pytest plugin: options, markers, the host and libvirt fixtures, and the end-of-run reports."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from harness.checks.preparation import CheckPlan
from harness.checks.result import CheckResult, Verdict
from harness.devices import DeviceChanger
from harness.guard import DeviceGuard
from harness.host.host import Host
from harness.host.pci import UnknownDeviceError, normalize_bdf
from harness.hypothesis_profiles import register_profiles
from harness.journal import DEFAULT_JOURNAL, ChangeJournal
from harness.libvirt.connection import (
    DEFAULT_URI,
    LibvirtUnavailableError,
    answers,
    is_local_system_uri,
    open_connection,
)
from harness.libvirt.daemon import PrivateLibvirtd, private_libvirtd
from harness.libvirt.facts import LibvirtFacts, gather_libvirt_facts
from harness.libvirt.guests import choose_virt_type
from harness.report.properties import check_properties
from harness.report.reporter import HarnessReporter
from harness.xml.domain import DomainType

register_profiles()

ALLOW_ENV = "HARNESS_ALLOW"
GUEST_TYPE_ENV = "HARNESS_GUEST_TYPE"
reporter_key = pytest.StashKey[HarnessReporter]()


class HarnessWarning(UserWarning):
    """A preparation check ended in WARN."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "hostdev-harness: PCI device assignment validation")
    group.addoption("--harness-uri", default=None, help=f"libvirt URI of the host (default {DEFAULT_URI})")
    group.addoption(
        "--harness-allow",
        default=None,
        help=f"comma-separated PCI addresses that suites may detach (default: ${ALLOW_ENV}); "
        "host-critical devices are refused even when listed",
    )
    group.addoption("--harness-refuse", default=None, help="comma-separated PCI addresses never to touch")
    group.addoption("--harness-strict", action="store_true", help="a WARN verdict fails its test")
    group.addoption(
        "--harness-guest-type",
        default=None,
        choices=("auto", "kvm", "qemu"),
        help=f"domain type of the throwaway guests that take devices (default ${GUEST_TYPE_ENV} or auto: "
        "kvm where the KVM probe runs a guest)",
    )
    group.addoption(
        "--harness-snapshot", default=None, help="check a host snapshot directory instead of this host"
    )
    group.addoption("--harness-journal", default=None, help=f"the change journal (default {DEFAULT_JOURNAL})")
    group.addoption("--harness-report-dir", default=None, help="where the summary goes (default reports/)")
    parser.addini("harness_uri", "libvirt URI of the host", default=DEFAULT_URI)
    parser.addini("harness_refuse", "PCI addresses never to touch", type="args", default=[])
    parser.addini("harness_planned_devices", "devices a guest is planned to take (sizes limits)", default="1")
    parser.addini("harness_guest_memory_mib", "guest memory planned, in MiB (sizes memlock)", default="1024")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "harness_destructive: changes device bindings (needs allowlisted devices)"
    )
    for address in allowlist(config) + list(refuse_list(config)):
        try:
            normalize_bdf(address)
        except UnknownDeviceError as exc:
            raise pytest.UsageError(f"hostdev-harness: {exc}") from None
    if not hasattr(config, "workerinput"):  # under xdist only the controller reports
        reporter = HarnessReporter(config)
        config.stash[reporter_key] = reporter
        config.pluginmanager.register(reporter, "harness-reporter")


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def allowlist(config: pytest.Config) -> list[str]:
    value = config.getoption("harness_allow")
    return _split(value if value is not None else os.environ.get(ALLOW_ENV))


def parametrize_allowlist(metafunc: pytest.Metafunc, argname: str) -> None:
    """One test per allowlisted device; a single visible skip when none is allowlisted."""
    allowed = allowlist(metafunc.config)
    no_device = pytest.param(None, marks=pytest.mark.skip(reason="no device allowlisted (--harness-allow)"))
    metafunc.parametrize(argname, allowed or [no_device])


def refuse_list(config: pytest.Config) -> tuple[str, ...]:
    return tuple(_split(config.getoption("harness_refuse"))) + tuple(config.getini("harness_refuse"))


@pytest.fixture(scope="session")
def harness_uri(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("harness_uri") or pytestconfig.getini("harness_uri"))


@pytest.fixture(scope="session")
def harness_private_libvirtd(harness_uri: str) -> Iterator[PrivateLibvirtd | None]:
    """A libvirtd of the run's own when none answers on this machine at the local system URI."""
    if not is_local_system_uri(harness_uri) or answers(harness_uri):
        yield None
        return
    # Its own short state directory: a unix socket path may not exceed 107 bytes.
    with private_libvirtd() as daemon:
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
def harness_host(request: pytest.FixtureRequest, pytestconfig: pytest.Config, harness_uri: str) -> Host:
    snapshot = pytestconfig.getoption("harness_snapshot")
    if snapshot:
        return Host.from_snapshot(snapshot, refuse=refuse_list(pytestconfig))

    def libvirt_facts() -> LibvirtFacts:
        try:
            return gather_libvirt_facts(request.getfixturevalue("harness_libvirt"))
        except pytest.fail.Exception as exc:
            return LibvirtFacts.unreachable(harness_uri, str(exc))

    return Host.local(libvirt_facts=libvirt_facts, refuse=refuse_list(pytestconfig))


@pytest.fixture(scope="session")
def harness_plan(pytestconfig: pytest.Config) -> CheckPlan:
    planned = int(pytestconfig.getini("harness_planned_devices"))
    return CheckPlan(
        planned_devices=max(planned, len(allowlist(pytestconfig))),
        guest_memory_mib=int(pytestconfig.getini("harness_guest_memory_mib")),
    )


@pytest.fixture(scope="session")
def harness_guard(harness_host: Host, pytestconfig: pytest.Config) -> DeviceGuard:
    return DeviceGuard(harness_host, allowlist(pytestconfig))


@pytest.fixture(scope="session")
def harness_journal(pytestconfig: pytest.Config) -> ChangeJournal:
    return ChangeJournal(Path(pytestconfig.getoption("harness_journal") or DEFAULT_JOURNAL))


@pytest.fixture(scope="session")
def harness_changer(
    request: pytest.FixtureRequest, harness_guard: DeviceGuard, harness_journal: ChangeJournal
) -> Iterator[DeviceChanger]:
    """Changes devices; undoes, at the start and at the end, whatever a run left in the journal."""
    if not harness_guard.host.root.is_live:
        pytest.skip("device changes need a live host, not a snapshot")
    changer = DeviceChanger(request.getfixturevalue("harness_libvirt"), harness_guard, harness_journal)
    for line in changer.restore_pending():
        warnings.warn(HarnessWarning(f"restored after an interrupted run: {line}"), stacklevel=1)
    yield changer
    changer.restore_pending()


@pytest.fixture(scope="session")
def harness_guest_type(pytestconfig: pytest.Config, harness_host: Host) -> DomainType:
    requested = pytestconfig.getoption("harness_guest_type") or os.environ.get(GUEST_TYPE_ENV, "auto")
    return choose_virt_type(requested, harness_host.kvm.usable)


@pytest.fixture
def harness_verdict(record_property: object, pytestconfig: pytest.Config) -> object:
    """Record a check result in JUnit and turn it into the test outcome (WARN fails only when strict)."""

    def verdict(result: CheckResult) -> None:
        for name, value in check_properties(result):
            record_property(name, value)  # type: ignore[operator]
        if result.verdict is Verdict.FAIL or (
            result.verdict is Verdict.WARN and pytestconfig.getoption("harness_strict")
        ):
            pytest.fail(result.explain(), pytrace=False)
        if result.verdict is Verdict.WARN:
            warnings.warn(HarnessWarning(result.explain()), stacklevel=2)

    return verdict
