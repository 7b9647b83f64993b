"""Capture what the readers read from a host into a directory, to attach to a bug report or test against.

A snapshot is written to a new directory (or replaces a previous snapshot with ``force``), never over
other files. What could identify the host or hold a secret is redacted on the way, and the manifest
(``.harness/manifest.json``) lists each redaction: that manifest is also what marks a directory as a
snapshot (``harness/host/backends.py``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import __version__
from harness.errors import HarnessInputError
from harness.host.backends import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_VERSION,
    SNAPSHOT_LIBVIRT,
    SNAPSHOT_MANIFEST,
    SNAPSHOT_PROBES,
    NotASnapshotError,
    read_manifest,
)
from harness.host.host import SNAPSHOT_HOSTNAME, Host
from harness.host.kernel import SNAPSHOT_DMESG
from harness.host.limits import DAEMONS_MARKER, QEMU_DAEMONS, UNIT_DIRS, daemons_marker, find_daemons
from harness.host.sysfs import pci_path

# Plain files read by the host model (globs relative to /).
CAPTURED_FILES = (
    "proc/cmdline",
    "proc/modules",
    "proc/cpuinfo",
    "proc/consoles",
    "proc/self/limits",
    "proc/self/mounts",
    "proc/net/route",
    "proc/net/ipv6_route",
    "proc/sys/kernel/osrelease",
    "proc/sys/kernel/hostname",
    "proc/sys/fs/file-max",
    "etc/default/grub",
    "etc/default/grub.d/*.cfg",
    "etc/sysconfig/grub",
    "etc/kernel/cmdline",
    "etc/os-release",
    "usr/lib/os-release",
    "boot/loader/entries/*.conf",
    "boot/grub2/grubenv",
    "boot/efi/EFI/*/grubenv",
    "efi/loader/loader.conf",
    "efi/loader/entries/*.conf",
    "boot/efi/loader/loader.conf",
    "boot/efi/loader/entries/*.conf",
    "boot/loader/loader.conf",
    "sys/class/dmi/id/sys_vendor",
    "sys/class/dmi/id/product_name",
    "sys/class/dmi/id/bios_vendor",
    "sys/class/dmi/id/bios_version",
    "sys/class/dmi/id/chassis_vendor",
    "sys/module/kvm_intel/parameters/nested",
    "sys/module/kvm_amd/parameters/nested",
    "etc/libvirt/qemu.conf",
    # The libvirt daemons' units and drop-ins: LimitNOFILE of a socket-activated daemon not running now.
    *(f"{d.lstrip('/')}/{n}.service" for d in UNIT_DIRS for n in QEMU_DAEMONS),
    *(f"{d.lstrip('/')}/{n}.service.d/*.conf" for d in UNIT_DIRS for n in QEMU_DAEMONS),
    "etc/modprobe.d/*.conf",
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "etc/grub2.cfg",
    "etc/grub2-efi.cfg",
    "boot/efi/EFI/*/grub.cfg",
    "sys/class/iommu/*/intel-iommu/ecap",
    "sys/class/iommu/*/intel-iommu/cap",
    "sys/class/iommu/*/amd-iommu/cap",
    "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
)
PCI_ATTRIBUTES = (
    "vendor", "device", "class", "subsystem_vendor", "subsystem_device", "sriov_totalvfs", "sriov_numvfs",
    "reset_method", "driver_override", "boot_vga", "config",
)  # fmt: skip
# Symlinks whose target's last component the readers use.
PCI_LINKS = ("driver", "iommu_group", "physfn")


def _copy_file(source: Path, target: Path, redactions: Redactions | None = None) -> None:
    try:
        data = source.read_bytes()
    except OSError:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if redactions is not None:
        host_path = "/" + str(source).lstrip("/")
        data = redactions.for_path(host_path)(host_path, data.decode(errors="replace")).encode()
    target.write_bytes(data)


def _mirror_link(live: Path, snapshot_root: Path) -> None:
    """Recreate a sysfs symlink inside the snapshot with the same relative target."""
    try:
        target = os.readlink(live)
    except OSError:
        return
    copy = snapshot_root / str(live).lstrip("/")
    copy.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(copy):
        copy.symlink_to(target)


# qemu.conf settings the readers use; every other line (passwords, TLS paths, ...) is left out.
QEMU_CONF_KEPT = ("max_files", "max_processes", "max_core", "user", "group", "security_driver")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_MAC = re.compile(r"\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_SERIAL = re.compile(r"(?i)(serial(?: ?number)?\s*[:=]\s*)\S+")
_URI_USER_HOST = re.compile(r"(?<=://)[^/]+(?=/)")


class Redactions:
    """Rewrites captured text so it names no host, address, serial number or secret; remembers what it did."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.pseudonym = "host-" + hashlib.sha256(hostname.encode()).hexdigest()[:8]
        self.done: dict[str, set[str]] = {}

    def note(self, path: str, what: str) -> None:
        self.done.setdefault(path, set()).add(what)

    def _sub(self, path: str, what: str, pattern: re.Pattern[str], replacement: str, text: str) -> str:
        new, count = pattern.subn(replacement, text)
        if count:
            self.note(path, what)
        return new

    def text(self, path: str, text: str) -> str:
        """Identifying data any captured text may carry: the hostname, UUIDs, MACs, IPv4 addresses, serials."""
        if self.hostname:
            # Whole words only: a short hostname ("vm") must not eat CPU flags ("vme") or module names.
            whole_word = re.compile(rf"(?<![\w.-]){re.escape(self.hostname)}(?![\w-])")
            text = self._sub(path, f"hostname (now {self.pseudonym})", whole_word, self.pseudonym, text)
        text = self._sub(path, "UUIDs", _UUID, "00000000-0000-0000-0000-000000000000", text)
        text = self._sub(path, "MAC addresses", _MAC, "00:00:00:00:00:00", text)
        text = self._sub(path, "IPv4 addresses", _IPV4, "0.0.0.0", text)
        return self._sub(path, "serial numbers", _SERIAL, r"\1REDACTED", text)

    def qemu_conf(self, path: str, text: str) -> str:
        kept = [
            line
            for line in text.splitlines()
            if line.partition("=")[0].strip() in QEMU_CONF_KEPT and not line.lstrip().startswith("#")
        ]
        self.note(path, f"every setting but {', '.join(QEMU_CONF_KEPT)} (passwords, TLS and paths)")
        return "\n".join(kept) + "\n"

    def routes(self, path: str, text: str) -> str:
        """Only default routes, with their gateways zeroed: the readers need the interface, nothing more."""
        lines = text.splitlines()
        if path.endswith("ipv6_route"):
            kept = [
                " ".join([*fields[:4], "0" * 32, *fields[5:]])
                for fields in (line.split() for line in lines)
                if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00"
            ]
        else:
            kept = lines[:1] + [
                "\t".join([fields[0], fields[1], "00000000", *fields[3:]])
                for fields in (line.split() for line in lines[1:])
                if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000"
            ]
        self.note(path, "every route but the default route, and its gateway")
        return "\n".join(kept) + "\n"

    def mounts(self, path: str, text: str) -> str:
        def source(line: str) -> str:
            fields = line.split(" ")
            if fields and (":" in fields[0] or fields[0].startswith("//")):
                self.note(path, "network filesystem servers")
                fields[0] = "redacted-server:/"
            return " ".join(fields)

        return "\n".join(source(line) for line in text.splitlines()) + "\n"

    def for_path(self, path: str) -> Callable[[str, str], str]:
        if path == "/etc/libvirt/qemu.conf":
            return self.qemu_conf
        if path in ("/proc/net/route", "/proc/net/ipv6_route"):
            return lambda p, t: self.text(p, self.routes(p, t))
        if path == "/proc/self/mounts":
            return lambda p, t: self.text(p, self.mounts(p, t))
        return self.text

    def listing(self) -> list[str]:
        return [f"{path}: {', '.join(sorted(whats))}" for path, whats in sorted(self.done.items())]


def _prepare_destination(destination: Path, force: bool) -> None:
    """Refuse anything but a new or empty directory, or (with force) a previous snapshot."""
    if not destination.exists():
        return
    if not destination.is_dir():
        raise HarnessInputError(
            f"{destination} exists and is not a directory; choose a new snapshot directory"
        )
    if not any(destination.iterdir()):
        return
    try:
        read_manifest(destination)
    except NotASnapshotError:
        raise HarnessInputError(
            f"{destination} is not empty and is not a snapshot; nothing was changed; choose a new directory"
        ) from None
    if not force:
        raise HarnessInputError(
            f"{destination} holds a snapshot already; nothing was changed; pass --force to replace it"
        )


def capture_snapshot(host: Host, destination: Path, *, force: bool = False) -> tuple[Path, list[str]]:
    """Write the snapshot to ``destination``; returns it and the list of what was redacted."""
    if not host.is_live:
        raise HarnessInputError("a snapshot is taken of this machine, not of another snapshot")
    destination = destination.absolute()
    _prepare_destination(destination, force)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Written next to its destination and renamed at the end: an interrupted capture leaves nothing half done.
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        redactions = _capture_into(host, staging)
        if destination.exists():
            shutil.rmtree(destination) if any(destination.iterdir()) else destination.rmdir()
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return destination, redactions


def _capture_into(host: Host, destination: Path) -> list[str]:
    redactions = Redactions(host.name)
    live = Path("/")
    for pattern in CAPTURED_FILES:
        for source in live.glob(pattern):
            _copy_file(source, destination / str(source).lstrip("/"), redactions)
    release = host.kernel.release
    for name in ("modules.builtin", "modules.dep"):
        _copy_file(live / f"lib/modules/{release}/{name}", destination / f"lib/modules/{release}/{name}")
    for name in os.listdir("/sys/firmware/acpi/tables") if os.path.isdir("/sys/firmware/acpi/tables") else []:
        (destination / "sys/firmware/acpi/tables").mkdir(parents=True, exist_ok=True)
        (destination / "sys/firmware/acpi/tables" / name).touch()  # the readers only ask which tables exist
    # Links rather than empty folders, which git would drop from a committed snapshot.
    for member in live.glob("sys/kernel/iommu_groups/*/devices/*"):
        _mirror_link(member, destination)
    if os.path.exists("/dev/vfio/vfio"):
        (destination / "dev/vfio").mkdir(parents=True, exist_ok=True)
        (destination / "dev/vfio/vfio").touch()
    for device in host.pci:
        sys_path = Path(device.sys_path)
        _mirror_link(Path(pci_path(device.address)), destination)
        for attribute in PCI_ATTRIBUTES:
            _copy_file(sys_path / attribute, destination / str(sys_path).lstrip("/") / attribute)
        for link in (*PCI_LINKS, *(f"virtfn{i}" for i in range(len(device.virtfns)))):
            _mirror_link(sys_path / link, destination)
    for link_dir in ("sys/class/net", "sys/class/block", "sys/class/tty"):
        for entry in (live / link_dir).glob("*"):
            _mirror_link(entry, destination)  # its target path names the PCI device behind it
    for entry in (live / "sys/bus/virtio/devices").glob("*"):
        _mirror_link(entry, destination)
        real = entry.resolve()
        for attribute in ("device", "mount_tag"):
            _copy_file(real / attribute, destination / str(real).lstrip("/") / attribute)
    # The limits QEMU gets come from the daemon that starts it: its name, uid and limits, nothing else of it.
    daemons = find_daemons(host.root)
    for daemon in daemons:
        for name in ("comm", "status", "limits"):
            _copy_file(
                live / f"proc/{daemon.pid}/{name}", destination / f"proc/{daemon.pid}/{name}", redactions
            )
    (destination / DAEMONS_MARKER.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (destination / DAEMONS_MARKER.lstrip("/")).write_text(daemons_marker([d.pid for d in daemons]))
    probes = {"kvm": {"usable": host.kvm.usable, "detail": host.kvm.detail}}
    (destination / SNAPSHOT_PROBES.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (destination / SNAPSHOT_PROBES.lstrip("/")).write_text(json.dumps(probes, indent=2) + "\n")
    libvirt_text = _URI_USER_HOST.sub(
        lambda match: "" if match.group(0) in ("", "/") else "redacted-host", host.libvirt.to_json()
    )
    (destination / SNAPSHOT_LIBVIRT.lstrip("/")).write_text(
        redactions.text(SNAPSHOT_LIBVIRT, libvirt_text) + "\n"
    )
    dmesg = "\n".join(host.kernel.log) + "\n"
    (destination / SNAPSHOT_DMESG.lstrip("/")).write_text(redactions.text(SNAPSHOT_DMESG, dmesg))
    (destination / SNAPSHOT_HOSTNAME.lstrip("/")).write_text(redactions.pseudonym + "\n")
    redactions.note(SNAPSHOT_HOSTNAME, f"hostname (now {redactions.pseudonym})")
    listing = redactions.listing()
    write_manifest(destination, host=redactions.pseudonym, redacted=listing)
    return listing


def write_manifest(
    destination: Path,
    *,
    host: str,
    redacted: list[str],
    captured_at: str | None = None,
    note: str | None = None,
) -> None:
    """The marker that makes ``destination`` a snapshot, with what was redacted from it."""
    manifest: dict[str, object] = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_FORMAT_VERSION,
        "captured_by": f"hostdev-harness {__version__}",
        "captured_at": captured_at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": host,
        "redacted": redacted,
    }
    if note:
        manifest["note"] = note
    path = destination / SNAPSHOT_MANIFEST.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
