"""The run's options: every ``--harness-*`` flag, ini key and environment default, read once into one
frozen ``HarnessOptions`` kept in the config's stash; every reader (plugin, suites, reporter) uses it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.changes.journal import DEFAULT_JOURNAL, Owner
from harness.changes.leases import DEFAULT_LEASE_DIR
from harness.errors import HarnessInputError
from harness.guest.image import GUEST_IMAGE_ENV
from harness.host.pci import parse_pci_address
from harness.libvirt.connection import DEFAULT_URI
from harness.xml.address import PciAddress

ALLOW_ENV = "HARNESS_ALLOW"
GUEST_TYPE_ENV = "HARNESS_GUEST_TYPE"
GUEST_TYPES = ("auto", "kvm", "qemu")
MATRIX_MODES = ("full", "cover")
# The options that name something: an empty value is a usage error, never "the default".
_NAMING_OPTIONS = (
    "harness_uri",
    "harness_journal",
    "harness_snapshot",
    "harness_report_dir",
    "harness_lease_dir",
)


@dataclass(frozen=True)
class HarnessOptions:
    """What the run was asked for, parsed and checked (defaults are the options' defaults)."""

    uri: str = DEFAULT_URI
    allow: tuple[PciAddress, ...] = ()
    refuse: tuple[PciAddress, ...] = ()
    strict: bool = False
    guest_type: str = "auto"
    snapshot: str | None = None
    journal: Path = DEFAULT_JOURNAL
    guest_image: str | None = None
    report_dir: Path = Path("reports")
    lease_dir: Path = DEFAULT_LEASE_DIR
    cycles: int = 1
    planned_devices: int = 1
    guest_memory_mib: int = 1024
    matrix: str = "full"


options_key = pytest.StashKey[HarnessOptions]()
# Who this process's changes belong to (the run, the xdist worker), set in ``pytest_configure``.
owner_key = pytest.StashKey[Owner]()


def add_options(parser: pytest.Parser) -> None:
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
    group.addoption(
        "--harness-matrix",
        default=None,
        choices=MATRIX_MODES,
        help="full: every test on every allowlisted device (default); cover: each test once and each device "
        "at least once (ini harness_matrix)",
    )
    parser.addini("harness_uri", "libvirt URI of the host", default=DEFAULT_URI)
    parser.addini("harness_refuse", "PCI addresses never to touch", type="args", default=[])
    parser.addini("harness_planned_devices", "devices a guest is planned to take (sizes limits)", default="1")
    parser.addini("harness_guest_memory_mib", "guest memory planned, in MiB (sizes memlock)", default="1024")
    parser.addini("harness_matrix", "full or cover: how much of a test × device matrix runs", default="full")


def options(config: pytest.Config) -> HarnessOptions:
    """The run's options, read and checked on the first call (in ``pytest_configure``); a bad one is a
    usage error before any test runs."""
    if options_key not in config.stash:
        try:
            config.stash[options_key] = read_options(config)
        except HarnessInputError as exc:
            raise pytest.UsageError(f"hostdev-harness: {exc}") from None
    return config.stash[options_key]


def split_list(value: str | None) -> list[str]:
    """A comma-separated option's items, stripped; empty items dropped."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def parse_allowlist(items: list[str]) -> tuple[PciAddress, ...]:
    """The allowlisted devices, each parsed once (``01:00.0`` and ``pci_0000_01_00_0`` alike), in order,
    without repeats."""
    return tuple(dict.fromkeys(parse_pci_address(item) for item in items))


def _positive_ini(config: pytest.Config, key: str) -> int:
    text = str(config.getini(key)).strip()
    if not text.isdigit() or int(text) < 1:
        raise HarnessInputError(
            f"ini key {key} = {text!r}: expected a positive whole number (e.g. -o {key}=2)"
        )
    return int(text)


def read_options(config: pytest.Config) -> HarnessOptions:
    """Every option and ini key the harness reads, parsed and checked, in the order a user is told of them."""
    allow = config.getoption("harness_allow")
    allowed = parse_allowlist(split_list(allow if allow is not None else os.environ.get(ALLOW_ENV)))
    refuse_texts = split_list(config.getoption("harness_refuse")) + list(config.getini("harness_refuse"))
    refuse = tuple(parse_pci_address(text) for text in refuse_texts)
    snapshot = config.getoption("harness_snapshot")
    if snapshot:
        _read_snapshot(snapshot)
    planned = _positive_ini(config, "harness_planned_devices")
    memory = _positive_ini(config, "harness_guest_memory_mib")
    for option in _NAMING_OPTIONS:
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
    chosen_reports = config.getoption("harness_report_dir")
    reports = Path(chosen_reports).absolute() if chosen_reports else config.rootpath / "reports"
    if reports.exists() and not reports.is_dir():
        # Found now, not after every test ran and the reports could not be written.
        raise HarnessInputError(
            f"report folder {reports} is not a directory: name a folder (--harness-report-dir)"
        )
    matrix = config.getoption("harness_matrix") or str(config.getini("harness_matrix"))
    if matrix not in MATRIX_MODES:
        raise HarnessInputError(f"harness_matrix = {matrix!r}: use one of {', '.join(MATRIX_MODES)}")
    return HarnessOptions(
        uri=str(config.getoption("harness_uri") or config.getini("harness_uri")),
        allow=allowed,
        refuse=refuse,
        strict=bool(config.getoption("harness_strict")),
        guest_type=config.getoption("harness_guest_type") or guest_type or "auto",
        snapshot=snapshot or None,
        journal=Path(config.getoption("harness_journal") or DEFAULT_JOURNAL),
        guest_image=config.getoption("harness_guest_image") or None,
        report_dir=reports,
        lease_dir=Path(config.getoption("harness_lease_dir") or DEFAULT_LEASE_DIR),
        cycles=cycles,
        planned_devices=planned,
        guest_memory_mib=memory,
        matrix=matrix,
    )


def _read_snapshot(snapshot: str) -> None:
    """Read a snapshot as every check and the inventory will: a corrupt file (``HostFileError``) is a usage
    error before any test runs, not an INTERNALERROR in collection or one failing test per reader."""
    from harness.checks.preparation import PREPARATION_CHECKS, CheckPlan, run_check
    from harness.host.backends import read_manifest
    from harness.inventory import assess_all
    from harness.opening import open_host

    read_manifest(snapshot)
    with open_host(snapshot) as host:
        for name in PREPARATION_CHECKS:
            run_check(name, host, CheckPlan())
        assess_all(host)
