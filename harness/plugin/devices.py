"""The run's devices for the suites: the allowlisted ones, and the host's PCI devices read once per run."""

from __future__ import annotations

import pytest

from harness.host.pci import PciDevice
from harness.opening import open_host
from harness.plugin.options import options
from harness.xml.address import PciAddress

collected_pci_key = pytest.StashKey[dict[PciAddress, PciDevice]]()


def allowlist(config: pytest.Config) -> list[PciAddress]:
    """The allowlisted devices as canonical BDFs (``01:00.0`` and ``pci_0000_01_00_0`` are parsed once)."""
    return list(options(config).allow)


def collected_devices(config: pytest.Config) -> dict[PciAddress, PciDevice]:
    """The host's PCI devices by address, read once per run: what the suites parametrize and choose by
    (read in a lab's TCG, one enumeration takes over a second). A test reads the live state through
    ``harness_host``; VFs made during the run are not in here. Raises OSError as enumerate_pci does."""
    if collected_pci_key not in config.stash:
        with open_host(options(config).snapshot) as host:
            config.stash[collected_pci_key] = {d.address: d for d in host.pci}
    return config.stash[collected_pci_key]


def parametrize_allowlist(metafunc: pytest.Metafunc, argname: str) -> None:
    """One test per allowlisted device; a single visible skip when none is allowlisted."""
    allowed = allowlist(metafunc.config)
    no_device = pytest.param(None, marks=pytest.mark.skip(reason="no device allowlisted (--harness-allow)"))
    metafunc.parametrize(argname, allowed or [no_device], ids=[a.bdf for a in allowed] or None)
