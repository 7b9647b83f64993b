"""Every rule of the guard, through its public API only (``DeviceGuard(host, allowlist).refusal(address)``
and ``.permit(address)``, addresses parsed at the edge as the options are), on a synthesized host that has each case: a device behind the default route, a
device sharing its group, a PF with VFs, a plain assignable device, a device on the refuse list."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.changes.guard import DeviceGuard, DeviceRefusedError
from harness.host.host import Host
from harness.host.pci import parse_pci_address
from harness.opening import open_host
from harness.xml.address import PciAddress
from tests.synthetic_hosts import Pci, base_devices, synthetic_hosts, write_host

PF = "pci0000:00/0000:00:1c.0/0000:01:00.0"
EXTRA = [
    # Share group 9 with 0000:00:1f.6, the NIC with the default route.
    Pci("0000:00:1f.4", "pci0000:00/0000:00:1f.4", "8086", "a323", "0x0c0500", "i801_smbus", 9),
    Pci("0000:00:1f.3", "pci0000:00/0000:00:1f.3", "8086", "a348", "0x040300", "snd_hda_intel", 9),
    Pci(
        "0000:01:10.0",
        f"{PF.rsplit('/', 1)[0]}/0000:01:10.0",
        "8086",
        "10ca",
        "0x020000",
        "igbvf",
        20,
        physfn=PF,
    ),
    Pci(
        "0000:01:10.2",
        f"{PF.rsplit('/', 1)[0]}/0000:01:10.2",
        "8086",
        "10ca",
        "0x020000",
        "igbvf",
        21,
        physfn=PF,
    ),
    Pci("0000:02:00.0", "pci0000:00/0000:00:1c.4/0000:02:00.0", "8086", "10d3", "0x020000", "e1000e", 22),
]


def _addresses(*texts: str) -> tuple[PciAddress, ...]:
    return tuple(parse_pci_address(text) for text in texts)


def _guard(host: Host, allow: list[str]) -> DeviceGuard:
    """The guard with an allowlist as a person writes it: parsed at the edge, like --harness-allow."""
    return DeviceGuard(host, _addresses(*allow))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    healthy = next(h for h in synthetic_hosts() if h.name == "synthetic-intel-iommu-on")
    root = tmp_path_factory.mktemp("guard") / "host"
    write_host(replace(healthy, name="guard", devices=[*base_devices(), *EXTRA]), root)
    return open_host(root, refuse=_addresses("0000:02:00.0"))


def _refused(host: Host, allow: list[str], address: str, because: str) -> None:
    guard = _guard(host, allow)
    reason = guard.refusal(parse_pci_address(address))
    assert reason is not None and because in reason, (
        f"{address} with allowlist {allow}: expected a refusal saying {because!r}, found {reason!r}"
    )
    with pytest.raises(DeviceRefusedError, match="nothing was changed"):
        guard.permit(parse_pci_address(address))


def test_an_allowlisted_plain_device_is_permitted(host: Host) -> None:
    guard = _guard(host, ["0000:01:00.0"])
    assert guard.refusal(parse_pci_address("0000:01:00.0")) is None
    assert guard.permit(parse_pci_address("0000:01:00.0")).address.bdf == "0000:01:00.0"


@pytest.mark.parametrize("spelling", ["0000:01:00.0", "01:00.0", "pci_0000_01_00_0"])
def test_every_spelling_of_an_allowlisted_address_is_the_same_device(host: Host, spelling: str) -> None:
    assert _guard(host, [spelling]).refusal(parse_pci_address("0000:01:00.0")) is None
    assert _guard(host, ["0000:01:00.0"]).permit(parse_pci_address(spelling)).address.bdf == "0000:01:00.0"


def test_a_device_off_the_allowlist_is_refused(host: Host) -> None:
    _refused(host, ["0000:01:10.0"], "0000:01:00.0", "not on the allowlist")  # a VF does not open its PF
    _refused(host, [], "0000:01:00.0", "not on the allowlist")


def test_a_host_critical_device_is_refused_even_when_allowlisted(host: Host) -> None:
    _refused(host, ["0000:00:1f.6"], "0000:00:1f.6", "host-critical")
    allowed = _guard(host, ["0000:00:1f.6"]).refusal(parse_pci_address("0000:00:1f.6")) or ""
    assert allowed.endswith("never detaches it (it is on --harness-allow, which cannot override this)"), (
        allowed
    )
    not_allowed = _guard(host, []).refusal(parse_pci_address("0000:00:1f.6")) or ""
    assert not_allowed.endswith("; the harness never detaches it"), not_allowed
    _refused(host, [], "0000:00:1f.6", "carries the default route (eno1)")
    assert "harness-allow" not in (_guard(host, []).refusal(parse_pci_address("0000:00:1f.6")) or ""), (
        "a device not on the allowlist must not be said to be on it"
    )


def test_every_reason_and_every_critical_peer_is_named(host: Host) -> None:
    refused = open_host(host.root.path, refuse=_addresses("0000:00:1f.6", "0000:02:00.0"))
    _refused(refused, [], "0000:00:1f.6", "carries the default route (eno1), is on the refuse list")
    _refused(refused, ["0000:00:1f.3"], "0000:00:1f.3", "with host-critical 0000:00:1f.6")
    twice = open_host(host.root.path, refuse=_addresses("0000:00:1f.4"))
    _refused(twice, ["0000:00:1f.3"], "0000:00:1f.3", "with host-critical 0000:00:1f.4, 0000:00:1f.6")


def test_a_device_sharing_a_group_with_a_host_critical_one_is_refused(host: Host) -> None:
    _refused(host, ["0000:00:1f.3"], "0000:00:1f.3", "shares IOMMU group 9 with host-critical 0000:00:1f.6")


def test_the_refuse_list_makes_a_device_host_critical(host: Host) -> None:
    _refused(host, ["0000:02:00.0"], "0000:02:00.0", "refuse list")


def test_vfs_of_an_allowlisted_pf_are_permitted_and_others_are_not(host: Host) -> None:
    guard = _guard(host, ["0000:01:00.0"])
    assert (
        guard.refusal(parse_pci_address("0000:01:10.0")) is None
        and guard.refusal(parse_pci_address("0000:01:10.2")) is None
    )
    assert guard.permit(parse_pci_address("0000:01:10.2")).physfn == PciAddress(0, 1, 0, 0)
    _refused(host, ["0000:01:10.2"], "0000:01:10.0", "not on the allowlist")


def test_an_unknown_device_is_refused_by_name(host: Host) -> None:
    _refused(host, ["0000:09:00.0"], "0000:09:00.0", "0000:09:00.0 is not a PCI device of this host")


def test_permitted_lists_exactly_the_allowed_devices(host: Host) -> None:
    allow = ["0000:01:00.0", "0000:00:1f.6", "0000:00:1f.3", "0000:02:00.0", "0000:3d:00.0"]
    permitted = _guard(host, allow).permitted()
    assert [str(a) for a in permitted] == ["0000:01:00.0"], permitted
