"""The throwaway guests: their XML and the choice of domain type."""

from __future__ import annotations

import pytest

from harness.libvirt.guests import GUEST_PREFIX, choose_virt_type, guest_with_hostdevs
from harness.xml.address import PciAddress
from harness.xml.domain import Domain
from harness.xml.hostdev import PciHostdev


@pytest.mark.parametrize(
    ("requested", "kvm_usable", "expected"),
    [("auto", True, "kvm"), ("auto", False, "qemu"), ("qemu", True, "qemu"), ("kvm", False, "kvm")],
)
def test_virt_type_choice(requested: str, kvm_usable: bool, expected: str) -> None:
    assert choose_virt_type(requested, kvm_usable) == expected


def test_unknown_virt_type_is_named() -> None:
    with pytest.raises(ValueError, match="'xen'"):
        choose_virt_type("xen", True)


def test_guest_carries_a_managed_hostdev_and_parses_back() -> None:
    hostdev = PciHostdev(source=PciAddress.from_bdf("0000:02:00.0"), managed=True)
    guest = guest_with_hostdevs((hostdev,), "qemu")
    assert guest.name.startswith(GUEST_PREFIX)
    parsed = Domain.parse(guest.to_xml())
    assert parsed.devices == (hostdev,) and parsed.virt_type == "qemu"
