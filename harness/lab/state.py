"""A lab's state on disk: ``<state root>/<name>/lab.json`` and the files beside it, read back as a :class:`LabState`.

The state dir (see :mod:`harness.lab.paths`) holds ``lab.json`` (the public description, see
:meth:`LabState.to_json`), ``console.log``, ``qemu.log``, ``qemu.pid``, ``qmp.sock`` and the guest's boot
scripts; the same directory is L1's read-only ``/run/hostdev-lab``. Whether the lab's QEMU still runs is read
from ``/proc``: a pid counts only while its command line names this state dir (pids are recycled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import HarnessEnvironmentError, HarnessInputError
from harness.guest.image import GUEST_IMAGE_ENV
from harness.lab.devices import LabDevice
from harness.lab.paths import (
    CONSOLE_LOG,
    LAB_JSON,
    LAB_QEMU_ENV,
    LAB_SKIPPED_ENV,
    QEMU_LOG,
    QMP_SOCKET,
    lab_state_dir,
)
from harness.lab.qemu import Ports
from harness.lab.sshd import SshAccess

State = TypeVar("State", bound="LabState")


class LabError(HarnessEnvironmentError):
    """A lab could not be started or used; boot failures carry the tail of the serial console."""


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


def qemu_alive(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is still this lab's QEMU (a recycled pid must not be mistaken for it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(state_dir).encode() in cmdline


@dataclass
class LabState:
    """What ``lab.json`` records about a lab, and what follows from it (URI, allowlist, L1's environment)."""

    name: str
    state_dir: Path
    ports: Ports
    spec_path: str | None = None
    accel: str = "tcg"
    pid: int | None = None
    status: str = "new"
    devices: list[LabDevice] = field(default_factory=list)
    skipped_devices: list[str] = field(default_factory=list)
    # Why each skipped device is not in this lab (e.g. "QEMU 7.2.22 has no 'igb' device ...").
    skipped_reasons: dict[str, str] = field(default_factory=dict)
    # Which QEMU runs L1 and why: version, origin ("machine" or "fetched"), reason, root, fetch_error.
    l1_qemu: dict[str, Any] = field(default_factory=dict)
    kernel_cmdline: str = ""
    detached: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    # The answering L2 guest's image (kernel + initramfs), built on L0 and visible in L1 at this path.
    guest_image: str | None = None
    # How to log in to L1 over SSH (port, user, key, known_hosts) when the lab has an sshd.
    ssh: SshAccess | None = None

    # --- what other tools use -------------------------------------------------------------------
    @property
    def libvirt_uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.ports.libvirtd}/system"

    @property
    def allowed_bdfs(self) -> list[str]:
        """Guest BDFs suites may detach: the lab's test devices, never L1's own virtio devices.

        The bridge endpoints are on it too: their group is shared (non-viable alone) by design, and the
        assignment suite proves that such a group only goes to a guest as a whole.
        """
        return [d.guest_bdf for d in self.devices if d.assignable and d.guest_bdf]

    @property
    def l1_qemu_text(self) -> str:
        """One line: which QEMU runs L1 and why."""
        if not self.l1_qemu:
            return "unknown"
        return f"QEMU {self.l1_qemu['version']} ({self.l1_qemu['origin']}): {self.l1_qemu['reason']}"

    @property
    def guest_env(self) -> dict[str, str]:
        env = {
            "HARNESS_ALLOW": ",".join(self.allowed_bdfs),
            # L1 keeps its kvm modules off (see guest_init.UNUSED_MODULES): its guests run under TCG.
            "HARNESS_GUEST_TYPE": "qemu",
            "HOSTDEV_LAB": self.name,
            LAB_QEMU_ENV: self.l1_qemu_text,
            "LIBVIRT_DEFAULT_URI": "qemu:///system",
            "PYTEST_PLUGINS": "harness.lab.report_properties",  # the lab's host properties in the reports
        }
        if self.guest_image:
            env[GUEST_IMAGE_ENV] = self.guest_image
        if self.skipped_summary:
            # Suites that need a skipped device (igb) skip naming exactly this.
            env[LAB_SKIPPED_ENV] = self.skipped_summary
        return env

    @property
    def skipped_summary(self) -> str | None:
        """The planned devices this lab booted without and why, in one line (None: it has them all)."""
        if not self.skipped_reasons:
            return None
        return "; ".join(f"{device}: {why}" for device, why in self.skipped_reasons.items())

    def device(self, device_id: str) -> LabDevice:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(f"lab {self.name} has no device {device_id!r} (has {[d.id for d in self.devices]})")

    def is_running(self) -> bool:
        return self.pid is not None and qemu_alive(self.pid, self.state_dir)

    @property
    def console_log(self) -> Path:
        return self.state_dir / CONSOLE_LOG

    @property
    def qemu_log(self) -> Path:
        return self.state_dir / QEMU_LOG

    @property
    def qmp_socket(self) -> Path:
        return self.state_dir / QMP_SOCKET

    def console_tail(self, lines: int = 40) -> str:
        return tail(self.console_log, lines)

    # --- lab.json -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "spec": self.spec_path,
            "pid": self.pid,
            "accel": self.accel,
            "detached": self.detached,
            "state_dir": str(self.state_dir),
            "ports": {
                "libvirtd": self.ports.libvirtd,
                "agent": self.ports.agent,
                **({"ssh": self.ports.ssh} if self.ports.ssh is not None else {}),
            },
            "libvirt_uri": self.libvirt_uri,
            "qmp_socket": str(self.qmp_socket),
            "console_log": str(self.console_log),
            "kernel_cmdline": self.kernel_cmdline,
            "harness_allow": self.allowed_bdfs,
            "devices": [device.to_json() for device in self.devices],
            "skipped_devices": self.skipped_devices,
            "skipped_reasons": self.skipped_reasons,
            "l1_qemu": self.l1_qemu,
            "timings": self.timings,
            "guest_image": self.guest_image,
            "ssh": self.ssh.to_json() if self.ssh else None,
        }

    def save(self) -> None:
        path = self.state_dir / LAB_JSON
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        partial.rename(path)

    @classmethod
    def load(cls: type[State], name: str, root: Path | None = None) -> State:
        state_dir = lab_state_dir(name, root)
        lab_json = state_dir / LAB_JSON
        try:
            data = json.loads(lab_json.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab named {name!r} (no {lab_json}); start one with hostdev-lab up") from None
        except (OSError, ValueError) as error:
            raise HarnessInputError(
                f"{lab_json} is unreadable or not JSON ({error}); stop its QEMU by hand and remove {state_dir}"
            ) from None
        try:
            return cls._from_json(state_dir, data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise HarnessInputError(
                f"{lab_json} is not a lab state file ({type(error).__name__}: {error}); "
                f"stop its QEMU by hand and remove {state_dir}"
            ) from None

    @classmethod
    def _from_json(cls: type[State], state_dir: Path, data: Any) -> State:
        return cls(
            name=data["name"],
            state_dir=state_dir,
            ports=Ports(**data["ports"]),
            spec_path=data.get("spec"),
            accel=data.get("accel", "tcg"),
            pid=data.get("pid"),
            status=data.get("status", "unknown"),
            devices=[LabDevice(**device) for device in data.get("devices", [])],
            skipped_devices=data.get("skipped_devices", []),
            skipped_reasons=data.get("skipped_reasons", {}),
            l1_qemu=data.get("l1_qemu", {}),
            kernel_cmdline=data.get("kernel_cmdline", ""),
            detached=data.get("detached", False),
            timings=data.get("timings", {}),
            guest_image=data.get("guest_image"),
            ssh=SshAccess.from_json(data["ssh"]) if data.get("ssh") else None,
        )
