"""Driver lookups of PCI functions: which driver a function is bound to (its sysfs ``driver`` link), waiting
for a bind or unbind to finish, and the ``/dev/vfio`` node of a group. Readers only; changes use them."""

from __future__ import annotations

import time

from harness.errors import HostStateError
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.xml.address import PciAddress

VFIO_DRIVER = "vfio-pci"


def current_driver(root: HostRoot, address: PciAddress) -> str | None:
    return root.link_name(pci_path(address, "driver"))


def wait_for_driver(
    root: HostRoot, address: PciAddress, expected: str | None, timeout: float = 10.0
) -> str | None:
    """Poll sysfs until the driver link matches; bind and unbind finish asynchronously for some drivers."""
    deadline = time.monotonic() + timeout
    found = current_driver(root, address)
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        found = current_driver(root, address)
    return found


def require_driver(
    root: HostRoot, address: PciAddress, expected: str | None, *, after: str, look: str
) -> None:
    """Wait for ``expected`` on ``address``; otherwise a HostStateError saying what was found and where to look."""
    found = wait_for_driver(root, address, expected)
    if found != expected:
        raise HostStateError(
            f"{after}: expected driver {expected or 'none'}, found {found or 'none'} ({look})"
        )


def vfio_group_node(group: int | None) -> str | None:
    return None if group is None else f"/dev/vfio/{group}"
