"""Configuration-space parsing and the kernel's ACS rule, on configuration spaces built byte by byte."""

from __future__ import annotations

import pytest

from harness.host.pcicaps import (
    ACS_EGRESS_CONTROL,
    ACS_REQUEST_REDIRECT,
    REQUIRED_ACS,
    Acs,
    PortType,
    parse_config,
)
from tests.synthetic_hosts import build_config

ALL = REQUIRED_ACS | 0x02


def _config(**facts: object) -> bytes:
    return build_config(vendor=0x8086, device=0x10D3, class_code=0x020000, **facts)  # type: ignore[arg-type]


def test_facts_survive_a_round_trip() -> None:
    config = parse_config(
        _config(multifunction=True, port_type=PortType.ROOT_PORT, acs=Acs(ALL, REQUIRED_ACS))
    )
    assert config is not None
    assert (config.multifunction, config.port_type, config.acs) == (
        True,
        PortType.ROOT_PORT,
        Acs(ALL, REQUIRED_ACS),
    )


@pytest.mark.parametrize(
    ("facts", "isolates"),
    [
        ({"port_type": PortType.ROOT_PORT, "acs": Acs(ALL, ALL)}, True),
        ({"port_type": PortType.ROOT_PORT, "acs": Acs(ALL, ALL & ~ACS_REQUEST_REDIRECT)}, False),
        ({"port_type": PortType.ROOT_PORT, "acs": Acs(ALL, 0)}, False),
        # A feature the port lacks counts as hard-wired on (pci_acs_flags_enabled).
        ({"port_type": PortType.ROOT_PORT, "acs": Acs(REQUIRED_ACS & ~ACS_REQUEST_REDIRECT, ALL)}, True),
        ({"port_type": PortType.ROOT_PORT, "acs": Acs(ACS_EGRESS_CONTROL, 0)}, True),
        ({"port_type": PortType.ROOT_PORT}, False),
        ({"port_type": PortType.DOWNSTREAM_PORT}, False),
        ({"port_type": PortType.ENDPOINT}, True),  # single function: nothing to isolate from
        ({"port_type": PortType.ENDPOINT, "multifunction": True}, False),
        ({"port_type": PortType.ENDPOINT, "multifunction": True, "acs": Acs(ALL, ALL)}, True),
        ({"port_type": PortType.PCIE_TO_PCI_BRIDGE, "acs": Acs(ALL, ALL)}, False),
        ({"port_type": None}, False),  # conventional PCI never has ACS
    ],
)
def test_the_kernels_acs_rule(facts: dict[str, object], isolates: bool) -> None:
    config = parse_config(_config(**facts))
    assert config is not None and config.acs_isolates() is isolates, (facts, config)


def test_unreadable_extended_space_makes_acs_unknown_not_absent() -> None:
    config = parse_config(_config(port_type=PortType.ROOT_PORT, acs=Acs(ALL, ALL))[:256])
    assert config is not None and config.acs is None and not config.extended_readable
    assert config.acs_isolates() is None
    assert parse_config(b"\xff" * 32) is None


def test_missing_names_the_features_not_enabled() -> None:
    assert Acs(ALL, ALL & ~ACS_REQUEST_REDIRECT).missing() == ["ReqRedir"]
    assert Acs(ALL, 0).missing() == ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"]


def test_a_looping_capability_list_ends() -> None:
    data = bytearray(_config(port_type=PortType.ENDPOINT))
    data[0x40], data[0x41] = 0x05, 0x40  # an MSI capability pointing at itself, no PCIe capability
    data[0x100:0x104] = (0x0001 | (0x100 << 20)).to_bytes(4, "little")
    config = parse_config(bytes(data))
    assert config is not None and config.port_type is None
