"""A running nested host: start, wait until ready, find its devices, exec in it, stop it.

State of a lab lives in ``<state root>/<name>/`` (see :mod:`harness.lab.paths`): ``lab.json`` (the
public description, see :meth:`Lab.to_json`), ``console.log``, ``qemu.log``, ``qemu.pid``, ``qmp.sock``
and the guest's boot scripts (the same directory is L1's read-only ``/run/hostdev-lab``).

A lab started by :func:`booted_lab` or ``hostdev-lab run`` dies with the process that started it
(``PR_SET_PDEATHSIG``); a lab started detached (``hostdev-lab up``) runs until ``hostdev-lab down``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessEnvironmentError, HarnessInputError
from harness.lab import agent
from harness.lab.accel import choose_accel
from harness.lab.guest_image import GUEST_IMAGE_ENV, ensure_guest_image
from harness.lab.guest_init import GUEST_QEMU_CACHE, write_guest_files
from harness.lab.kernel import BOOT_FAILED_MARKER, ensure_initramfs, ensure_kernel
from harness.lab.l1_qemu import choose_l1_qemu
from harness.lab.paths import (
    LAB_QEMU_ENV,
    LAB_SKIPPED_ENV,
    STATE_MARKER,
    cache_dir,
    lab_state_dir,
    removable_state_dir,
    reports_dir,
    state_root,
)
from harness.lab.qemu import LabDevice, Ports, RuntimePaths, build_machine, wanted_models
from harness.lab.spec import LabSpec, load_spec
from harness.lab.sshd import SshAccess, ensure_sshd, read_banner, write_ssh_files
from harness.progress import Progress

BOOT_TIMEOUT_ENV = "HOSTDEV_LAB_BOOT_TIMEOUT"
DEFAULT_BOOT_TIMEOUT = 180.0
PR_SET_PDEATHSIG = 1
Log = Callable[[str], None]


class LabError(HarnessEnvironmentError):
    """A lab could not be started or used; boot failures carry the tail of the serial console."""


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is still this lab's QEMU (a recycled pid must not be mistaken for it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(state_dir).encode() in cmdline


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


@dataclass
class Lab:
    """A nested host, running or being started. Built by :func:`start_lab` or :meth:`Lab.load`."""

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
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

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
        if self.skipped_reasons:
            # Suites that need a skipped device (igb) skip naming exactly this.
            env[LAB_SKIPPED_ENV] = "; ".join(
                f"{device}: {why}" for device, why in self.skipped_reasons.items()
            )
        return env

    def device(self, device_id: str) -> LabDevice:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(f"lab {self.name} has no device {device_id!r} (has {[d.id for d in self.devices]})")

    def is_running(self) -> bool:
        return self.pid is not None and _pid_alive(self.pid, self.state_dir)

    def exec(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 600.0,
    ) -> tuple[int, str]:
        """Run a command in L1 (a string goes through ``sh -c``); return (exit code, combined output)."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        return agent.capture(
            self.ports.agent, argv, cwd=cwd, env={**self.guest_env, **(env or {})}, timeout=timeout
        )

    def stream(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
    ) -> int:
        """Run a command in L1 with its output streamed to L0's stdout/stderr; return its exit code."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        return agent.run(
            self.ports.agent,
            argv,
            cwd=cwd,
            env={**self.guest_env, **(env or {})},
            stdout=stdout,
            stderr=stderr,
        )

    def console_tail(self, lines: int = 40) -> str:
        return tail(self.state_dir / "console.log", lines)

    def qmp(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """One QMP command on L1's QEMU (e.g. ``device_add`` to simulate physical hotplug)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(self.state_dir / "qmp.sock"))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # greeting
            for message in (
                {"execute": "qmp_capabilities"},
                {"execute": command, "arguments": arguments or {}},
            ):
                stream.write(json.dumps(message).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "event" not in reply:
                        break
                if "error" in reply:
                    raise LabError(f"QMP {command} failed: {reply['error']}")
            return reply.get("return")

    # --- state ----------------------------------------------------------------------------------
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
            "qmp_socket": str(self.state_dir / "qmp.sock"),
            "console_log": str(self.state_dir / "console.log"),
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
        path = self.state_dir / "lab.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        partial.rename(path)

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> Lab:
        state_dir = lab_state_dir(name, root)
        lab_json = state_dir / "lab.json"
        try:
            data = json.loads(lab_json.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab named {name!r} (no {lab_json}); start one with hostdev-lab up") from None
        except (OSError, ValueError) as error:
            raise HarnessInputError(
                f"{lab_json} is unreadable or not JSON ({error}); stop its QEMU by hand and remove {state_dir}"
            ) from None
        try:
            return cls._from_json(name, state_dir, data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise HarnessInputError(
                f"{lab_json} is not a lab state file ({type(error).__name__}: {error}); "
                f"stop its QEMU by hand and remove {state_dir}"
            ) from None

    @classmethod
    def _from_json(cls, name: str, state_dir: Path, data: Any) -> Lab:
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

    # --- lifecycle ------------------------------------------------------------------------------
    def stop(self, *, keep_state: bool = False) -> None:
        """Stop QEMU (and with it L1's libvirtd and everything else in L1); remove the state dir."""
        pid = self.process.pid if self.process is not None else self.pid
        if pid is not None and (self.process is not None or _pid_alive(pid, self.state_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, self.process, 5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, self.process, 5.0)
        self.process = None
        self.status = "stopped"
        if keep_state:
            with contextlib.suppress(OSError):
                self.save()
        elif removable_state_dir(self.state_dir):
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _wait_gone(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return True
        elif not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


def list_labs(root: Path | None = None) -> list[Lab]:
    base = root or state_root()
    labs = []
    for lab_json in sorted(base.glob("*/lab.json")):
        with contextlib.suppress(LabError, HarnessInputError, ValueError, KeyError, TypeError):
            labs.append(Lab.load(lab_json.parent.name, base))
    return labs


# Lists every PCI device in L1 as "<sysfs path> <driver>"; the path gives the topology below the root bus.
_DISCOVER = (
    "udevadm settle --timeout=60; renice -n 0 -p $(pidof systemd-udevd) >/dev/null; "
    "for d in /sys/bus/pci/devices/*; do "
    'drv=$(readlink "$d/driver"); echo "$(readlink -f "$d") ${drv##*/}"; done'
)


def discover_devices(devices: list[LabDevice], listing: str) -> None:
    """Fill ``guest_bdf`` of each planned device from L1's sysfs listing (see ``_DISCOVER``)."""
    by_topology: dict[tuple[str, ...], str] = {}
    for line in listing.splitlines():
        path = line.split()[0] if line.split() else ""
        if "/pci0000:00/" not in path:
            continue
        segments = path.split("/pci0000:00/", 1)[1].split("/")
        by_topology[tuple(segment[-4:] for segment in segments)] = segments[-1]
    for device in devices:
        device.guest_bdf = by_topology.get(tuple(device.topology))


def start_lab(
    spec: LabSpec | str | Path,
    *,
    name: str | None = None,
    detach: bool = False,
    boot_timeout: float | None = None,
    ssh: bool = False,
    log: Log = _stderr_log,
) -> Lab:
    """Boot a lab and return it once L1's libvirtd answers on the forwarded port and udev has settled.

    ``ssh`` (or the spec's ``[access] ssh``) adds an sshd in L1 on a loopback port (:mod:`harness.lab.sshd`).

    Raises :class:`~harness.lab.spec.SpecError` for a bad spec (before anything starts) and
    :class:`LabError` with the console tail when the boot fails.
    """
    lab_spec = spec if isinstance(spec, LabSpec) else load_spec(spec)
    lab_name = name or lab_spec.name
    timeout = boot_timeout or float(os.environ.get(BOOT_TIMEOUT_ENV, DEFAULT_BOOT_TIMEOUT))
    root = state_root()
    state_dir = lab_state_dir(lab_name, root)
    if (state_dir / "lab.json").exists():
        previous = Lab.load(lab_name, root)
        if previous.is_running():
            raise LabError(
                f"lab {lab_name!r} is already running (pid {previous.pid}); hostdev-lab down {lab_name}"
            )
    if state_dir.exists() or state_dir.is_symlink():
        if not removable_state_dir(state_dir):
            raise HarnessInputError(
                f"{state_dir} exists but was not made by hostdev-lab (no {STATE_MARKER}); "
                "move it away or pick another --name"
            )
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    (state_dir / STATE_MARKER).write_text("made by hostdev-lab; removed by hostdev-lab down\n")

    cache = cache_dir()
    prepare_started = time.monotonic()
    kernel = ensure_kernel(cache, log)
    initramfs = ensure_initramfs(kernel, cache)
    guest_image = ensure_guest_image(kernel, cache)
    with Progress(
        f"lab {lab_name}: choosing the accelerator (a probe boot the first time)", prefix="hostdev-lab"
    ) as step:
        accel = choose_accel(cache, kernel, initramfs)
        step.done(accel)
    qemu_cache = cache / "l1-libvirt-qemu-cache"
    qemu_cache.mkdir(parents=True, exist_ok=True)
    reports = reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    with_ssh = ssh or lab_spec.access.ssh
    sshd_tree = ensure_sshd(cache, log) if with_ssh else None
    ports = Ports(libvirtd=_free_port(), agent=_free_port(), ssh=_free_port() if with_ssh else None)
    paths = RuntimePaths(state_dir, reports, qemu_cache, kernel.vmlinuz, initramfs)
    l1_qemu = choose_l1_qemu(wanted_models(lab_spec), cache, log, choice=lab_spec.machine.qemu)
    plan = build_machine(lab_spec, paths, ports, accel=accel, l1_qemu=l1_qemu, warn=log)
    write_guest_files(state_dir, lab_name, kernel, reports, [device.model for device in plan.devices])
    ssh_access = (
        write_ssh_files(state_dir, lab_name, ports.ssh, sshd_tree)
        if sshd_tree is not None and ports.ssh is not None
        else None
    )
    (state_dir / "qemu.argv").write_text(shlex.join(plan.argv) + "\n")
    lab = Lab(
        name=lab_name,
        state_dir=state_dir,
        ports=ports,
        spec_path=str(lab_spec.path) if lab_spec.path else None,
        accel=accel,
        status="booting",
        devices=plan.devices,
        skipped_devices=list(plan.skipped),
        skipped_reasons=plan.skipped,
        l1_qemu=l1_qemu.to_json(),
        kernel_cmdline=plan.argv[plan.argv.index("-append") + 1],
        detached=detach,
        guest_image=str(guest_image),
        ssh=ssh_access,
    )
    lab.timings["prepare_s"] = round(time.monotonic() - prepare_started, 2)
    lab.save()

    with (state_dir / "qemu.log").open("wb") as qemu_log:
        lab.process = subprocess.Popen(
            plan.argv,
            env={**os.environ, **plan.env},
            stdin=subprocess.DEVNULL,
            stdout=qemu_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent(os.getpid()),
        )
    lab.pid = lab.process.pid
    lab.save()
    try:
        with Progress(
            f"lab {lab_name}: booting L1 ({kernel.release}, {accel})",
            prefix="hostdev-lab",
        ) as step:
            _wait_ready(lab, timeout, step.note)
            step.done(", ".join(f"{stage} {seconds} s" for stage, seconds in lab.timings.items()))
    except BaseException:
        lab.stop(keep_state=True)
        lab.status = "failed"
        with contextlib.suppress(OSError):
            lab.save()
        raise
    lab.status = "ready"
    lab.save()
    return lab


def _boot_failure(lab: Lab, why: str) -> LabError:
    return LabError(
        f"lab {lab.name}: {why}; console: {lab.state_dir / 'console.log'} (hostdev-lab console {lab.name})\n"
        f"--- console tail ({lab.state_dir / 'console.log'}) ---\n{lab.console_tail(30)}\n"
        f"--- qemu output ({lab.state_dir / 'qemu.log'}) ---\n{tail(lab.state_dir / 'qemu.log', 10)}\n"
        f"reproduce: {shlex.join(['hostdev-lab', 'up', lab.spec_path or '<spec>', '--name', lab.name])}"
    )


def _wait_ready(lab: Lab, timeout: float, stage: Callable[[str], None] = lambda _: None) -> None:
    import libvirt

    # libvirt prints every failed connection attempt to stderr unless told otherwise.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    started = time.monotonic()
    deadline = started + timeout
    console = lab.state_dir / "console.log"
    agent_up = libvirtd_up = False
    sshd_up = lab.ssh is None
    while not (agent_up and libvirtd_up and sshd_up):
        assert lab.process is not None
        if lab.process.poll() is not None:
            raise _boot_failure(lab, f"QEMU exited with status {lab.process.returncode} during boot")
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Kernel panic" in text or BOOT_FAILED_MARKER in text:
            raise _boot_failure(lab, "the nested kernel failed to boot")
        if time.monotonic() > deadline:
            waited = (("agent", agent_up), ("libvirtd", libvirtd_up), ("sshd", sshd_up))
            missing = [what for what, up in waited if not up]
            raise _boot_failure(lab, f"{' and '.join(missing)} did not answer within {timeout:.0f}s")
        if not agent_up and agent.ping(lab.ports.agent, timeout=1.0):
            agent_up = True
            lab.timings["agent_s"] = round(time.monotonic() - started, 2)
            stage("L1's exec agent answers")
        if not libvirtd_up:
            try:
                libvirt.open(lab.libvirt_uri).close()
                libvirtd_up = True
                lab.timings["libvirtd_s"] = round(time.monotonic() - started, 2)
                stage(f"L1's libvirtd answers at {lab.libvirt_uri}")
            except libvirt.libvirtError:
                pass
        if not sshd_up and lab.ssh is not None and (banner := read_banner(lab.ssh.port)):
            sshd_up = True
            lab.timings["sshd_s"] = round(time.monotonic() - started, 2)
            stage(f"L1's sshd answers on 127.0.0.1:{lab.ssh.port} ({banner})")
        if not (agent_up and libvirtd_up and sshd_up):
            time.sleep(0.2)
    stage("udev settles; finding the planned devices in L1's sysfs")
    rc, listing = lab.exec(_DISCOVER, timeout=120)
    if rc != 0:
        raise _boot_failure(lab, f"device discovery in L1 failed ({rc}): {listing[-500:]}")
    discover_devices(lab.devices, listing)
    missing_devices = [d.id for d in lab.devices if d.guest_bdf is None and d.role != "free-root-port"]
    if missing_devices:
        raise _boot_failure(lab, f"devices not found in L1's sysfs: {missing_devices}\n{listing}")
    lab.timings["ready_s"] = round(time.monotonic() - started, 2)
    # Readable from inside L1 too (the state dir is L1's /run/hostdev-lab).
    env_lines = [f"export {key}={shlex.quote(value)}" for key, value in lab.guest_env.items()]
    (lab.state_dir / "env").write_text("\n".join(env_lines) + "\n")


def stop_lab(name: str) -> bool:
    """Stop a lab by name; False if no such lab state exists."""
    try:
        lab = Lab.load(name)
    except LabError:
        return False
    lab.stop()
    return True


@contextlib.contextmanager
def booted_lab(
    spec: LabSpec | str | Path, *, name: str | None = None, ssh: bool = False, log: Log = _stderr_log
) -> Iterator[Lab]:
    """Boot a lab for the duration of a ``with`` block; it also dies if this process dies."""
    lab = start_lab(spec, name=name, ssh=ssh, log=log)
    try:
        yield lab
    finally:
        lab.stop()


__all__ = [
    "GUEST_QEMU_CACHE",
    "Lab",
    "LabError",
    "booted_lab",
    "discover_devices",
    "list_labs",
    "start_lab",
    "stop_lab",
]
