"""Units of the host model's readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.host.critical import pci_ancestor
from harness.host.kernel import parse_cmdline
from harness.host.limits import Limit
from harness.host.pci import UnknownDeviceError, parse_pci_address
from harness.host.root import HostRoot
from harness.host.sysfs import pci_function
from harness.strategies import pci_addresses
from harness.xml.address import PciAddress


def test_cmdline_stops_at_init_arguments() -> None:
    assert parse_cmdline("intel_iommu=on iommu=pt quiet -- --init-flag=1") == {
        "intel_iommu": "on",
        "iommu": "pt",
        "quiet": "",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0000:01:00.0", "0000:01:00.0"), ("1:0.0", "0000:01:00.0"), ("pci_0000_3d_00_0", "0000:3d:00.0")],
)
def test_bdf_forms(text: str, expected: str) -> None:
    assert parse_pci_address(text).bdf == expected
    assert parse_pci_address(expected).nodedev_name == "pci_" + expected.replace(":", "_").replace(".", "_")


@pytest.mark.parametrize("text", ["eth0", "0000:01:20.0", "0000:01:00.8", "zz:00.0", ""])
def test_bad_bdf_names_what_is_wrong(text: str) -> None:
    with pytest.raises(UnknownDeviceError, match=r"PCI address|out of range"):
        parse_pci_address(text)


@given(st.lists(pci_addresses()))
def test_addresses_sort_as_their_bdf_text(addresses: list[PciAddress]) -> None:
    """Reports and test ids list devices in BDF text order: typed addresses keep that order."""
    assert [a.bdf for a in sorted(addresses)] == sorted(a.bdf for a in addresses)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("0000:01:00.0", PciAddress(0, 1, 0, 0)), ("pci0000:00", None), ("net", None), ("virtfn0", None)],
)
def test_a_sysfs_name_is_read_as_a_pci_function_or_none(name: str, expected: PciAddress | None) -> None:
    assert pci_function(name) == expected


def test_pci_ancestor_is_the_nearest_pci_device() -> None:
    path = "/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/net/eth0"
    assert str(pci_ancestor(path)) == "0000:01:00.0"
    assert pci_ancestor("/sys/devices/platform/serial8250/tty/ttyS0") is None


def test_limit_parsing() -> None:
    assert Limit.parse("unlimited unlimited bytes").at_least(1 << 40)
    assert not Limit.parse("65536 65536 bytes").at_least(1 << 30)


def test_root_maps_host_paths(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("quiet\n")
    root = HostRoot(tmp_path)
    assert not root.is_live
    assert root.read_stripped("/proc/cmdline") == "quiet"
    assert root.read_text("/proc/missing") is None
