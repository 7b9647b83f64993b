"""The pytest plugin: options, markers, the host and libvirt fixtures, and the end-of-run reports."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import libvirt
import pytest

from harness.changes.guard import DeviceGuard
from harness.changes.journal import DEFAULT_JOURNAL, ChangeJournal, Owner
from harness.changes.leases import DEFAULT_LEASE_DIR, GroupLeases
from harness.changes.protocol import ChangeContext, HostChanges, orphaned, recover
from harness.checks.preparation import CheckPlan
from harness.checks.result import CheckResult, Verdict
from harness.errors import HarnessError, HarnessInputError
from harness.guest.image import GUEST_IMAGE_ENV
from harness.host.backends import read_manifest
from harness.host.host import Host, open_host
from harness.host.pci import PciDevice, enumerate_pci, parse_pci_address
from harness.host.root import HostRoot
from harness.libvirt.connection import (
    DEFAULT_URI,
    LibvirtUnavailableError,
    answers,
    is_local_system_uri,
    open_connection,
)
from harness.libvirt.daemon import PrivateLibvirtd, connected, private_libvirtd
from harness.libvirt.facts import LibvirtFacts, gather_libvirt_facts
from harness.libvirt.guests import choose_virt_type
from harness.report.properties import check_properties
from harness.report.reporter import HarnessReporter, report_dir
from harness.xml.address import PciAddress
from harness.xml.domain import DomainType

# One concern per module: how much of a test × device matrix runs is harness.matrix.
pytest_plugins = ["harness.matrix"]

ALLOW_ENV = "HARNESS_ALLOW"
GUEST_TYPE_ENV = "HARNESS_GUEST_TYPE"
GUEST_TYPES = ("auto", "kvm", "qemu")
reporter_key = pytest.StashKey[HarnessReporter]()
owner_key = pytest.StashKey[Owner]()
allowlist_key = pytest.StashKey[list[PciAddress]]()
collected_pci_key = pytest.StashKey[dict[PciAddress, PciDevice]]()


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
        choices=GUEST_TYPES,
        help=f"domain type of the throwaway guests that take devices (default ${GUEST_TYPE_ENV} or auto: "
        "kvm where the KVM probe runs a guest)",
    )
    group.addoption(
        "--harness-snapshot", default=None, help="check a host snapshot directory instead of this host"
    )
    group.addoption("--harness-journal", default=None, help=f"the change journal (default {DEFAULT_JOURNAL})")
    group.addoption(
        "--harness-guest-image",
        default=os.environ.get(GUEST_IMAGE_ENV),
        help=f"directory of the answering guest's kernel + initramfs for the hotplug suite (default ${GUEST_IMAGE_ENV}; "
        "the lab sets it)",
    )
    group.addoption("--harness-report-dir", default=None, help="where the summary goes (default reports/)")
    group.addoption(
        "--harness-lease-dir",
        default=None,
        help=f"where IOMMU-group leases are held, shared by every run on this host (default {DEFAULT_LEASE_DIR})",
    )
    group.addoption(
        "--harness-cycles",
        default=1,
        type=int,
        help="assign/release cycles per device in the cycle tests (default 1); each is checked for leaks",
    )
    parser.addini("harness_uri", "libvirt URI of the host", default=DEFAULT_URI)
    parser.addini("harness_refuse", "PCI addresses never to touch", type="args", default=[])
    parser.addini("harness_planned_devices", "devices a guest is planned to take (sizes limits)", default="1")
    parser.addini("harness_guest_memory_mib", "guest memory planned, in MiB (sizes memlock)", default="1024")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before hypothesis's own plugin loads the chosen profile. Only then: importing hypothesis takes
    # seconds (ten in a lab's TCG), and only the XML suites use it.
    if config.getoption("--hypothesis-profile", None):
        from harness.hypothesis_profiles import register_profiles, require_profile

        register_profiles()
        try:
            require_profile(str(config.getoption("--hypothesis-profile")))
        except HarnessInputError as exc:
            raise pytest.UsageError(f"hostdev-harness: {exc}") from None
    config.addinivalue_line(
        "markers", "harness_destructive: changes device bindings (needs allowlisted devices)"
    )
    try:
        config.stash[allowlist_key] = list(dict.fromkeys(parse_pci_address(a) for a in _allow_option(config)))
        _validate_options(config)
    except HarnessInputError as exc:
        raise pytest.UsageError(f"hostdev-harness: {exc}") from None
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:  # an xdist worker: the controller named the run
        config.stash[owner_key] = Owner.this_process(worker_input["harness_run_id"], worker_input["workerid"])
    else:
        config.stash[owner_key] = Owner.this_process()
        reporter = HarnessReporter(config)
        config.stash[reporter_key] = reporter
        config.pluginmanager.register(reporter, "harness-reporter")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistRunId(config.stash[owner_key].run_id), "harness-xdist")


class XdistRunId:
    """Hands the run's id to each xdist worker, so its journal entries name the same run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def pytest_configure_node(self, node: object) -> None:
        node.workerinput["harness_run_id"] = self.run_id  # type: ignore[attr-defined]


def _journal(config: pytest.Config) -> ChangeJournal:
    return ChangeJournal(Path(config.getoption("harness_journal") or DEFAULT_JOURNAL))


def _recover_orphans(config: pytest.Config, when: str) -> None:
    """Undo what owners that are gone left in the journal: once, on the controller (or the only process)."""
    if hasattr(config, "workerinput") or config.getoption("harness_snapshot"):
        return
    journal = _journal(config)
    try:
        dead, _live = orphaned(journal)
        if not dead:
            return
        uri = str(config.getoption("harness_uri") or config.getini("harness_uri"))
        with ExitStack() as stack:  # libvirt only if an entry needs it (a VF count does not)
            recovery = recover(
                journal, ChangeContext(HostRoot("/"), lambda: stack.enter_context(connected(uri)))
            )
    except HarnessError as exc:
        raise pytest.UsageError(f"hostdev-harness: {when}: {exc}") from None
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    for line in recovery.undone:
        message = f"hostdev-harness: {when}, restored after an interrupted run: {line}"
        if terminal is not None:
            terminal.write_line(message, yellow=True)
        if reporter_key in config.stash:
            config.stash[reporter_key].restored.append(line)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _recover_orphans(session.config, "before the run")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # A worker that died mid-test left its changes; every worker is gone now, so they are orphans.
    _recover_orphans(session.config, "after the run")


def _validate_options(config: pytest.Config) -> None:
    """Every option and ini key the harness reads, checked once before any test: a bad one is a usage error."""
    refuse_list(config)  # the allowlist is parsed into the stash already
    snapshot = config.getoption("harness_snapshot")
    if snapshot:
        read_manifest(snapshot)
        _read_snapshot(snapshot)
    for key in ("harness_planned_devices", "harness_guest_memory_mib"):
        ini_positive_int(config, key)
    for option in (
        "harness_uri",
        "harness_journal",
        "harness_snapshot",
        "harness_report_dir",
        "harness_lease_dir",
    ):
        value = config.getoption(option)
        if value is not None and not str(value).strip():
            flag = "--" + option.replace("_", "-")
            raise HarnessInputError(f"{flag} is empty: give a value or leave the option out")
    cycles = config.getoption("harness_cycles")
    if cycles < 1:
        raise HarnessInputError(f"--harness-cycles {cycles}: expected a positive whole number (e.g. 3)")
    guest_type = os.environ.get(GUEST_TYPE_ENV)
    if guest_type is not None and guest_type not in GUEST_TYPES:
        raise HarnessInputError(
            f"${GUEST_TYPE_ENV}={guest_type!r}: expected one of {', '.join(GUEST_TYPES)} (or unset it)"
        )
    reports = report_dir(config)
    if reports.exists() and not reports.is_dir():
        # Found now, not after every test ran and the reports could not be written.
        raise HarnessInputError(
            f"report folder {reports} is not a directory: name a folder (--harness-report-dir)"
        )


def _read_snapshot(snapshot: str) -> None:
    """Read a snapshot as every check and the inventory will: a corrupt file (``HostFileError``) is a usage
    error before any test runs, not an INTERNALERROR in collection or one failing test per reader."""
    from harness.checks.preparation import PREPARATION_CHECKS, run_check
    from harness.inventory import assess_all

    with open_host(snapshot) as host:
        for name in PREPARATION_CHECKS:
            run_check(name, host, CheckPlan())
        assess_all(host)


def ini_positive_int(config: pytest.Config, key: str) -> int:
    text = str(config.getini(key)).strip()
    if not text.isdigit() or int(text) < 1:
        raise HarnessInputError(
            f"ini key {key} = {text!r}: expected a positive whole number (e.g. -o {key}=2)"
        )
    return int(text)


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _allow_option(config: pytest.Config) -> list[str]:
    value = config.getoption("harness_allow")
    return _split(value if value is not None else os.environ.get(ALLOW_ENV))


def allowlist(config: pytest.Config) -> list[PciAddress]:
    """The allowlisted devices as canonical BDFs (``01:00.0`` and ``pci_0000_01_00_0`` are parsed once)."""
    return config.stash.get(allowlist_key, [])


def collected_devices(config: pytest.Config) -> dict[PciAddress, PciDevice]:
    """The host's PCI devices by address, read once per run: what the suites parametrize and choose by
    (read in a lab's TCG, one enumeration takes over a second). A test reads the live state through
    ``harness_host``; VFs made during the run are not in here. Raises OSError as enumerate_pci does."""
    if collected_pci_key not in config.stash:
        root = HostRoot(config.getoption("harness_snapshot") or "/")
        config.stash[collected_pci_key] = {d.address: d for d in enumerate_pci(root)}
    return config.stash[collected_pci_key]


def parametrize_allowlist(metafunc: pytest.Metafunc, argname: str) -> None:
    """One test per allowlisted device; a single visible skip when none is allowlisted."""
    allowed = allowlist(metafunc.config)
    no_device = pytest.param(None, marks=pytest.mark.skip(reason="no device allowlisted (--harness-allow)"))
    metafunc.parametrize(argname, allowed or [no_device], ids=[a.bdf for a in allowed] or None)


def refuse_list(config: pytest.Config) -> tuple[PciAddress, ...]:
    texts = _split(config.getoption("harness_refuse")) + list(config.getini("harness_refuse"))
    return tuple(parse_pci_address(text) for text in texts)


@pytest.fixture(scope="session")
def harness_uri(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("harness_uri") or pytestconfig.getini("harness_uri"))


@pytest.fixture(scope="session")
def harness_private_libvirtd(
    request: pytest.FixtureRequest, harness_uri: str
) -> Iterator[PrivateLibvirtd | None]:
    """A libvirtd of the run's own when none answers on this machine at the local system URI."""
    if not is_local_system_uri(harness_uri) or answers(harness_uri):
        yield None
        return
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(
            f"hostdev-harness: starting a private libvirtd because none answers at {harness_uri}"
        )
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

    snapshot = pytestconfig.getoption("harness_snapshot")
    with open_host(snapshot, harness_uri, refuse_list(pytestconfig), libvirt_facts=libvirt_facts) as host:
        yield host


@pytest.fixture(scope="session")
def harness_plan(pytestconfig: pytest.Config) -> CheckPlan:
    planned = ini_positive_int(pytestconfig, "harness_planned_devices")
    return CheckPlan(
        planned_devices=max(planned, len(allowlist(pytestconfig))),
        guest_memory_mib=ini_positive_int(pytestconfig, "harness_guest_memory_mib"),
    )


@pytest.fixture(scope="session")
def harness_guard(harness_host: Host, pytestconfig: pytest.Config) -> DeviceGuard:
    return DeviceGuard(harness_host, allowlist(pytestconfig))


@pytest.fixture(scope="session")
def harness_journal(pytestconfig: pytest.Config) -> ChangeJournal:
    return _journal(pytestconfig)


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
    return GroupLeases(harness_owner, Path(pytestconfig.getoption("harness_lease_dir") or DEFAULT_LEASE_DIR))


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
