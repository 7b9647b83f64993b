"""Resource limits that bound device assignment, read for the processes that will hold the devices.

QEMU is started by a libvirt daemon (libvirtd, or virtqemud on modular daemons) and inherits that daemon's
limits, except where libvirt sets them itself: RLIMIT_NOFILE to qemu.conf's max_files when it is set, and
RLIMIT_MEMLOCK to guest memory + 1 GiB for a guest with a VFIO device, which only a privileged (system)
daemon can raise above its own hard limit. The harness's own /proc/self/limits is what a session daemon
inherits when the first client starts it, and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from harness.host.root import HostRoot

UNLIMITED = -1
QEMU_CONF = "/etc/libvirt/qemu.conf"
# The daemons that start QEMU for the qemu driver (monolithic, modular).
QEMU_DAEMONS = ("virtqemud", "libvirtd")
# Where systemd finds a unit and its drop-ins, lowest precedence first (a later LimitNOFILE= wins).
UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/system", "/etc/systemd/system")
# The limits of /proc/PID/limits the checks use, by their label there.
LABELS = {
    "Max locked memory": "memlock",
    "Max open files": "nofile",
    "Max processes": "nproc",
    "Max core file size": "core",
}
SELF = "/proc/self"
# Written by a snapshot capture that looked for the daemons (older snapshots lack it).
DAEMONS_MARKER = "/.harness/daemons.json"


@dataclass(frozen=True)
class Limit:
    soft: int  # UNLIMITED for "unlimited"
    hard: int

    @staticmethod
    def parse(text: str) -> Limit:
        def value(word: str) -> int:
            return UNLIMITED if word in ("unlimited", "infinity") else int(word)

        soft, hard = text.split()[:2]
        return Limit(value(soft), value(hard))

    def at_least(self, amount: int) -> bool:
        return self.soft == UNLIMITED or self.soft >= amount


def _read_limits(root: HostRoot, path: str) -> dict[str, Limit]:
    found: dict[str, Limit] = {}
    for line in (root.read_text(path) or "").splitlines():
        for label, key in LABELS.items():
            if line.startswith(label):
                try:
                    found[key] = Limit.parse(line[len(label) :])
                except ValueError:  # a snapshot's corrupt line is named, never read as "no limit"
                    raise root.error(
                        path, f"{line.strip()[:60]!r}, expected '{label}  SOFT HARD UNITS'"
                    ) from None
    return found


@dataclass(frozen=True)
class ProcessLimits:
    """The limits of one process, and who it is: a libvirt daemon found in /proc, or this process."""

    name: str
    pid: str  # a number, or "self"
    uid: int | None  # the real uid (/proc/PID/status), None when not read
    limits: dict[str, Limit] = field(default_factory=dict)

    @property
    def where(self) -> str:
        if self.pid == "self":
            return f"{SELF}/limits (this process)"
        return f"/proc/{self.pid}/limits ({self.name}, pid {self.pid})"

    def get(self, key: str) -> Limit | None:
        return self.limits.get(key)

    @classmethod
    def read(cls, root: HostRoot, pid: str, name: str) -> ProcessLimits:
        uid = None
        for line in (root.read_text(f"/proc/{pid}/status") or "").splitlines():
            if line.startswith("Uid:") and line.split()[1:2] and line.split()[1].isdigit():
                uid = int(line.split()[1])
        return cls(name, pid, uid, _read_limits(root, f"/proc/{pid}/limits"))


def find_daemons(root: HostRoot) -> list[ProcessLimits]:
    """The running libvirt daemons that start QEMU, found by name in /proc.

    One in a mount namespace other than init's is left out: the harness's own private libvirtd runs in one
    (harness/libvirt/daemon.py), and a daemon in a container reads another /etc/libvirt anyway.
    """
    daemons = []
    host_namespace = root.link_name("/proc/1/ns/mnt")
    for pid in root.listdir("/proc"):
        name = root.read_stripped(f"/proc/{pid}/comm") if pid.isdigit() else None
        if name not in QEMU_DAEMONS:
            continue
        namespace = root.link_name(f"/proc/{pid}/ns/mnt")
        if host_namespace is not None and namespace is not None and namespace != host_namespace:
            continue
        daemons.append(ProcessLimits.read(root, pid, name or ""))
    return daemons


@dataclass(frozen=True)
class UnitLimit:
    """LimitNOFILE= of a daemon's systemd unit, for a socket-activated daemon that is not running now."""

    unit: str
    nofile: Limit | None
    where: str  # the file that set it, or the unit file when it sets none


def read_unit_nofile(root: HostRoot, daemon: str) -> UnitLimit | None:
    """The last LimitNOFILE= of the unit and its drop-ins; None when the unit is not installed."""
    unit = f"{daemon}.service"
    files = [f"{d}/{unit}" for d in UNIT_DIRS if root.exists(f"{d}/{unit}")]
    if not files:
        return None
    files = files[-1:]  # the unit file of the highest precedence replaces the others
    for directory in UNIT_DIRS:
        files += [
            f"{directory}/{unit}.d/{n}" for n in root.listdir(f"{directory}/{unit}.d") if n.endswith(".conf")
        ]
    found: UnitLimit = UnitLimit(unit, None, files[0])
    for path in files:
        for line in (root.read_text(path) or "").splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() != "LimitNOFILE":
                continue
            soft, _, hard = value.strip().partition(":")
            try:
                found = UnitLimit(unit, Limit.parse(f"{soft} {hard or soft}"), path)
            except ValueError:
                found = UnitLimit(unit, None, path)
    return found


@dataclass(frozen=True)
class Limits:
    """What the limits check reads: the daemons, this process, qemu.conf and the system-wide file limit."""

    daemons: list[ProcessLimits]
    own: ProcessLimits
    system_file_max: int | None
    qemu_conf: dict[str, str]  # max_files, max_processes, max_core as written
    units: dict[str, UnitLimit]  # by daemon name, for the installed ones
    captured_daemons: bool  # False: an older snapshot that did not look for daemons

    @property
    def qemu_conf_max_files(self) -> int | None:
        return _int(self.qemu_conf.get("max_files"))

    @property
    def qemu_conf_max_processes(self) -> int | None:
        return _int(self.qemu_conf.get("max_processes"))

    def unit_nofile(self) -> tuple[UnitLimit, Limit] | None:
        """The first installed daemon unit that sets LimitNOFILE, with it (virtqemud before libvirtd)."""
        return next(((u, u.nofile) for u in self.units.values() if u.nofile is not None), None)

    def daemon(self, system: bool) -> ProcessLimits | None:
        """The daemon that starts QEMU for a system (root) or a session (another user) URI."""
        for daemon in sorted(self.daemons, key=lambda d: QEMU_DAEMONS.index(d.name)):
            if (daemon.uid == 0) == system:
                return daemon
        return None

    @classmethod
    def read(cls, root: HostRoot) -> Limits:
        file_max = root.read_stripped("/proc/sys/fs/file-max")
        units = {name: unit for name in QEMU_DAEMONS if (unit := read_unit_nofile(root, name)) is not None}
        return cls(
            daemons=find_daemons(root),
            own=ProcessLimits.read(root, "self", "this process"),
            system_file_max=int(file_max) if file_max and file_max.isdigit() else None,
            qemu_conf=_qemu_conf(root),
            units=units,
            captured_daemons=root.is_live or root.exists(DAEMONS_MARKER),
        )


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _qemu_conf(root: HostRoot) -> dict[str, str]:
    """The limit settings of qemu.conf, as libvirt reads them (the first one given; comments ignored)."""
    settings: dict[str, str] = {}
    for line in (root.read_text(QEMU_CONF) or "").splitlines():
        name, _, value = line.partition("=")
        key = name.strip()
        if key in ("max_files", "max_processes", "max_core") and not line.lstrip().startswith("#"):
            settings.setdefault(key, value.strip().strip('"'))
    return settings


def daemons_marker(pids: list[str]) -> str:
    """What a snapshot records of the daemon search, so that an older snapshot can say it did not look."""
    return json.dumps({"searched": list(QEMU_DAEMONS), "found": pids}) + "\n"
