"""SR-IOV changes of a PF: its VF count (``sriov_numvfs``) and whether new VFs get a host driver
(``sriov_drivers_autoprobe``); each verifies itself in sysfs and undoes itself to the value it read first."""

from __future__ import annotations

from dataclasses import dataclass

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.host.pci import PciDevice
from harness.host.root import HostRoot
from harness.host.sysfs import pci_path
from harness.xml.address import PciAddress


def _write(context: ChangeContext, host_path: str, value: str) -> None:
    try:
        context.root.resolve(host_path).write_text(value)
    except OSError as exc:
        raise ChangeError(f"writing {value} to {host_path} failed: {exc.strerror}") from None


@dataclass(frozen=True)
class VfCount(Change, kind="sriov_numvfs"):
    """``echo N > sriov_numvfs`` on a PF, through 0 as the kernel requires; undone by the old count."""

    device: PciAddress
    before: int
    count: int

    @classmethod
    def of(cls, root: HostRoot, pf: PciDevice, count: int) -> VfCount:
        address = pf.address
        if not root.exists(pci_path(address, "sriov_numvfs")):
            raise ChangeError(f"{pf.address} is not an SR-IOV PF (no {pci_path(address, 'sriov_numvfs')})")
        total = int(root.read_stripped(pci_path(address, "sriov_totalvfs")) or 0)
        if not 0 <= count <= total:
            raise ChangeError(f"{pf.address} offers 0 to {total} VFs, not {count}; nothing was changed")
        return cls(address, int(root.read_stripped(pci_path(address, "sriov_numvfs")) or 0), count)

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def describe(self) -> str:
        return f"set {self.device} sriov_numvfs {self.before} -> {self.count}"

    def reproduce(self) -> str:
        return f"echo 0 > {pci_path(self.device, 'sriov_numvfs')}; echo {self.count} > {pci_path(self.device, 'sriov_numvfs')}"

    def _set(self, context: ChangeContext, count: int) -> None:
        path = pci_path(self.device, "sriov_numvfs")
        if int(context.root.read_stripped(path) or 0) == count:
            return
        _write(context, path, "0")  # the kernel refuses N -> M unless one of them is 0
        if count:
            _write(context, path, str(count))

    def apply(self, context: ChangeContext) -> None:
        self._set(context, self.count)

    def verify(self, context: ChangeContext) -> None:
        found = int(context.root.read_stripped(pci_path(self.device, "sriov_numvfs")) or 0)
        links = [n for n in context.root.listdir(pci_path(self.device)) if n.startswith("virtfn")]
        if found != self.count or len(links) != self.count:
            raise ChangeError(
                f"{self.device}: expected {self.count} VFs, sriov_numvfs reads {found} and there are "
                f"{len(links)} virtfn links (look at {pci_path(self.device)}/)"
            )

    def undo(self, context: ChangeContext) -> str:
        self._set(context, self.before)
        found = int(context.root.read_stripped(pci_path(self.device, "sriov_numvfs")) or 0)
        if found != self.before:
            raise ChangeError(f"{self.device}: sriov_numvfs reads {found} after undo, expected {self.before}")
        return f"set {self.device} sriov_numvfs back to {self.before}"


@dataclass(frozen=True)
class VfAutoprobe(Change, kind="sriov_drivers_autoprobe"):
    """Whether new VFs get a host driver (off for VFs meant for guests); undone by the old setting."""

    device: PciAddress
    before: bool
    enabled: bool

    @classmethod
    def of(cls, root: HostRoot, pf: PciDevice, enabled: bool) -> VfAutoprobe:
        address = pf.address
        return cls(address, root.read_stripped(pci_path(address, "sriov_drivers_autoprobe")) == "1", enabled)

    def touches(self) -> tuple[PciAddress, ...]:
        return (self.device,)

    def describe(self) -> str:
        return f"set {self.device} sriov_drivers_autoprobe to {int(self.enabled)}"

    def reproduce(self) -> str:
        return f"echo {int(self.enabled)} > {pci_path(self.device, 'sriov_drivers_autoprobe')}"

    def apply(self, context: ChangeContext) -> None:
        _write(context, pci_path(self.device, "sriov_drivers_autoprobe"), str(int(self.enabled)))

    def verify(self, context: ChangeContext) -> None:
        found = context.root.read_stripped(pci_path(self.device, "sriov_drivers_autoprobe"))
        if found != str(int(self.enabled)):
            raise ChangeError(
                f"{self.device}: sriov_drivers_autoprobe reads {found}, expected {int(self.enabled)}"
            )

    def undo(self, context: ChangeContext) -> str:
        _write(context, pci_path(self.device, "sriov_drivers_autoprobe"), str(int(self.before)))
        return f"set {self.device} sriov_drivers_autoprobe back to {int(self.before)}"
