"""Where a PCI function lives in sysfs: the one place that spells ``/sys/bus/pci/devices/<bdf>``."""

from __future__ import annotations

from harness.xml.address import PciAddress

PCI_DEVICES = "/sys/bus/pci/devices"


def pci_path(address: PciAddress, *names: str) -> str:
    """``/sys/bus/pci/devices/0000:01:00.0/<names...>`` for one function, read through a ``HostRoot``."""
    return "/".join((PCI_DEVICES, address.bdf, *names))


def pci_function(name: str) -> PciAddress | None:
    """The PCI function a sysfs name stands for (an entry of ``PCI_DEVICES``, a link's target, a path
    component like ``0000:01:00.0``), or None when it names something else (``pci0000:00``, ``net``)."""
    try:
        return PciAddress.from_bdf(name)
    except ValueError:
        return None
