"""Host-critical devices: the ones whose loss cuts the host off (network, root disk, console, control)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.host.root import HostRoot
from harness.host.sysfs import PCI_DEVICES, pci_function, pci_path
from harness.xml.address import PciAddress

# virtio device ids (virtio spec 5): a VM's control channels and the filesystems its host shares with it
# (an overlay root over 9p does not show its lower 9p mount in /proc/self/mounts, so the id decides).
VIRTIO_CONTROL_DEVICES = {
    0x0003: "is a virtio console",
    0x0009: "is a virtio 9p filesystem shared by the machine's host",
    0x0013: "is a virtio vsock (the machine's control channel)",
    0x001A: "is a virtio-fs filesystem shared by the machine's host",
}


def pci_ancestor(host_path: str) -> PciAddress | None:
    """The nearest PCI device on a sysfs device path, e.g. the NIC behind ``.../net/eth0``."""
    found = None
    for component in host_path.split("/"):
        address = pci_function(component) if component[:1].isdigit() else None
        if address is not None:
            found = address
    return found


def _name(root: HostRoot, source: str, name: str) -> str:
    """A device name read from ``source`` that becomes part of a sysfs path: one path component."""
    if "/" in name or "\x00" in name or name in (".", ".."):
        raise root.error(source, f"names {name[:40]!r}, expected a device name (one path component)")
    return name


def _default_route_interfaces(root: HostRoot) -> list[str]:
    interfaces = []
    for line in (root.read_text("/proc/net/route") or "").splitlines()[1:]:
        fields = line.split()
        # Destination and mask both 0.0.0.0: the default route.
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            interfaces.append(_name(root, "/proc/net/route", fields[0]))
    for line in (root.read_text("/proc/net/ipv6_route") or "").splitlines():
        fields = line.split()
        if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
            interfaces.append(_name(root, "/proc/net/ipv6_route", fields[9]))
    return list(dict.fromkeys(interfaces))


def _block_devices_below(root: HostRoot, name: str, seen: set[str]) -> Iterable[str]:
    """A block device and, for dm/md/partitions, the devices it is built on."""
    if name in seen:
        return
    seen.add(name)
    yield name
    for slave in root.listdir(f"/sys/class/block/{name}/slaves"):
        yield from _block_devices_below(root, slave, seen)


def _mount_sources(root: HostRoot) -> list[tuple[str, str, str]]:
    mounts = []
    for line in (root.read_text("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            if "\x00" in fields[0]:
                raise root.error(
                    "/proc/self/mounts", f"a source {fields[0][:40]!r}, expected a device or a name"
                )
            mounts.append((fields[0], fields[1], fields[2]))
    return mounts


def find_host_critical(root: HostRoot, refuse: Iterable[PciAddress] = ()) -> dict[PciAddress, list[str]]:
    """Map each host-critical PCI address to the reasons it must never be detached."""
    reasons: dict[PciAddress, list[str]] = {}

    def mark(address: PciAddress | None, reason: str) -> None:
        if address is not None and reason not in reasons.setdefault(address, []):
            reasons[address].append(reason)

    def mark_below(sys_path: str, reason: str) -> None:
        mark(pci_ancestor(sys_path), reason)

    for interface in _default_route_interfaces(root):
        mark_below(
            root.realpath(f"/sys/class/net/{interface}/device"), f"carries the default route ({interface})"
        )

    virtio_tags = {
        (root.read_stripped(f"/sys/bus/virtio/devices/{dev}/mount_tag") or "").strip("\x00"): dev
        for dev in root.listdir("/sys/bus/virtio/devices")
    }
    for source, mountpoint, fstype in _mount_sources(root):
        what = "the root filesystem" if mountpoint == "/" else f"a mounted filesystem ({mountpoint})"
        if source.startswith("/dev/"):
            name = root.realpath(source).rsplit("/", 1)[-1] if root.exists(source) else source[5:]
            for block in _block_devices_below(root, name, set()):
                mark_below(root.realpath(f"/sys/class/block/{block}"), f"holds {what} on {source}")
        elif fstype in ("9p", "virtiofs") and source in virtio_tags:
            mark_below(
                root.realpath(f"/sys/bus/virtio/devices/{virtio_tags[source]}"), f"shares {what} ({fstype})"
            )

    for line in (root.read_text("/proc/consoles") or "").splitlines():
        console = line.split()[0] if line.split() else ""
        if console:
            console = _name(root, "/proc/consoles", console)
            mark_below(root.realpath(f"/sys/class/tty/{console}/device"), f"is the console ({console})")
    for address in filter(None, map(pci_function, root.listdir(PCI_DEVICES))):
        if root.read_stripped(pci_path(address, "boot_vga")) == "1":
            mark(address, "is the boot display (boot_vga)")

    for device in root.listdir("/sys/bus/virtio/devices"):
        kind = root.read_hex(f"/sys/bus/virtio/devices/{device}/device")
        if kind is not None and kind in VIRTIO_CONTROL_DEVICES:
            mark_below(root.realpath(f"/sys/bus/virtio/devices/{device}"), VIRTIO_CONTROL_DEVICES[kind])

    for address in refuse:
        mark(address, "is on the refuse list (--harness-refuse / harness_refuse)")
    return reasons
