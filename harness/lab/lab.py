"""A lab's lifecycle: start, wait until ready, find its devices, exec in it, stop it.

Its state on disk is :mod:`harness.lab.state`, QMP is :mod:`harness.lab.qmp`, its devices are
:mod:`harness.lab.devices`. A lab started by :func:`booted_lab` or ``hostdev-lab run`` dies with the process
that started it (``PR_SET_PDEATHSIG``); a lab started detached (``hostdev-lab up``) runs until
``hostdev-lab down``.
"""

from __future__ import annotations

import contextlib
import ctypes
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

from harness.errors import HarnessInputError
from harness.lab import agent, qmp
from harness.lab.accel import choose_accel
from harness.lab.devices import DISCOVER, discover_devices
from harness.lab.guest_build import ensure_guest_image
from harness.lab.guest_init import write_guest_files
from harness.lab.kernel import BOOT_FAILED_MARKER, ensure_initramfs, ensure_kernel
from harness.lab.l1_qemu import choose_l1_qemu
from harness.lab.paths import (
    GUEST_ENV,
    LAB_JSON,
    QEMU_ARGV,
    QEMU_LOG,
    STATE_MARKER,
    cache_dir,
    lab_state_dir,
    removable_state_dir,
    reports_dir,
    state_root,
)
from harness.lab.qemu import Ports, RuntimePaths, build_machine, wanted_models
from harness.lab.spec import LabSpec, load_spec
from harness.lab.sshd import ensure_sshd, read_banner, write_ssh_files
from harness.lab.state import LabError, LabState, qemu_alive, tail
from harness.progress import Progress

BOOT_TIMEOUT_ENV = "HOSTDEV_LAB_BOOT_TIMEOUT"
DEFAULT_BOOT_TIMEOUT = 180.0
PR_SET_PDEATHSIG = 1
# A stalled boot (stalled_boot) is booted once more, then it is a failure like any other.
BOOT_ATTEMPTS = 2
STALLED_TIMER_LINE = "kthread timer wakeup didn't happen"
STALLED_TIMER_REPORTS = 2
Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Lab(LabState):
    """A nested host, running or being started. Built by :func:`start_lab` or :meth:`Lab.load`."""

    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

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

    def qmp(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """One QMP command on L1's QEMU (e.g. ``device_add`` to simulate physical hotplug)."""
        try:
            return qmp.execute(self.qmp_socket, command, arguments)
        except qmp.QmpError as error:
            raise LabError(str(error)) from None

    # --- lifecycle ------------------------------------------------------------------------------
    def stop(self, *, keep_state: bool = False) -> None:
        """Stop QEMU (and with it L1's libvirtd and everything else in L1); remove the state dir."""
        pid = self.process.pid if self.process is not None else self.pid
        if pid is not None and (self.process is not None or qemu_alive(pid, self.state_dir)):
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
    if (state_dir / LAB_JSON).exists():
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
    (state_dir / QEMU_ARGV).write_text(shlex.join(plan.argv) + "\n")
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

    try:
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            _launch(lab, plan.argv, plan.env, detach=detach)
            try:
                with Progress(
                    f"lab {lab_name}: booting L1 ({kernel.release}, {accel})",
                    prefix="hostdev-lab",
                ) as step:
                    _wait_ready(lab, timeout, step.note)
                    step.done(", ".join(f"{stage} {seconds} s" for stage, seconds in lab.timings.items()))
                break
            except StalledBootError as stalled:
                if attempt == BOOT_ATTEMPTS:
                    raise
                lab.stop(keep_state=True)
                kept = lab.console_log.with_name(f"console.stalled-{attempt}.log")
                lab.console_log.replace(kept)
                log(
                    f"hostdev-lab: lab {lab_name}: {stalled.reason} (console kept in {kept}); booting L1 once more"
                )
    except BaseException:
        lab.stop(keep_state=True)
        lab.status = "failed"
        with contextlib.suppress(OSError):
            lab.save()
        raise
    lab.status = "ready"
    lab.save()
    return lab


def _launch(lab: Lab, argv: Sequence[str], env: Mapping[str, str], *, detach: bool) -> None:
    with (lab.state_dir / QEMU_LOG).open("wb") as qemu_log:
        lab.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=qemu_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent(os.getpid()),
        )
    lab.pid = lab.process.pid
    lab.status = "booting"
    lab.save()


class StalledBootError(LabError):
    """L1's kernel stopped making progress early in its boot (its timer interrupts stopped under TCG)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def stalled_boot(console_text: str) -> str | None:
    """Why a console shows a boot that will not go on by itself, or None.

    Measured here (lab-findings.md): under load, multi-threaded TCG can lose L1's timer a few seconds
    into its boot; the kernel then only prints RCU stall reports whose grace-period kthread "timer
    wakeup didn't happen", and nothing else, until the boot timeout. One report can come from a slow
    but healthy boot; the second means the timer never came back.
    """
    if console_text.count(STALLED_TIMER_LINE) >= STALLED_TIMER_REPORTS:
        return f"L1's kernel stalled ({STALLED_TIMER_REPORTS} RCU stall reports: its timer stopped under TCG)"
    return None


def _boot_failure(lab: Lab, why: str) -> LabError:
    return LabError(
        f"lab {lab.name}: {why}; console: {lab.console_log} (hostdev-lab console {lab.name})\n"
        f"--- console tail ({lab.console_log}) ---\n{lab.console_tail(30)}\n"
        f"--- qemu output ({lab.qemu_log}) ---\n{tail(lab.qemu_log, 10)}\n"
        f"reproduce: {shlex.join(['hostdev-lab', 'up', lab.spec_path or '<spec>', '--name', lab.name])}"
    )


def _wait_ready(lab: Lab, timeout: float, stage: Callable[[str], None] = lambda _: None) -> None:
    import libvirt

    # libvirt prints every failed connection attempt to stderr unless told otherwise.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    started = time.monotonic()
    deadline = started + timeout
    console = lab.console_log
    agent_up = libvirtd_up = False
    sshd_up = lab.ssh is None
    while not (agent_up and libvirtd_up and sshd_up):
        assert lab.process is not None
        if lab.process.poll() is not None:
            raise _boot_failure(lab, f"QEMU exited with status {lab.process.returncode} during boot")
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Kernel panic" in text or BOOT_FAILED_MARKER in text:
            raise _boot_failure(lab, "the nested kernel failed to boot")
        if not agent_up and (reason := stalled_boot(text)):
            raise StalledBootError(str(_boot_failure(lab, reason)), reason)
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
    rc, listing = lab.exec(DISCOVER, timeout=120)
    if rc != 0:
        raise _boot_failure(lab, f"device discovery in L1 failed ({rc}): {listing[-500:]}")
    discover_devices(lab.devices, listing)
    missing_devices = [d.id for d in lab.devices if d.guest_bdf is None and d.role != "free-root-port"]
    if missing_devices:
        raise _boot_failure(lab, f"devices not found in L1's sysfs: {missing_devices}\n{listing}")
    lab.timings["ready_s"] = round(time.monotonic() - started, 2)
    # Readable from inside L1 too (the state dir is L1's /run/hostdev-lab).
    env_lines = [f"export {key}={shlex.quote(value)}" for key, value in lab.guest_env.items()]
    (lab.state_dir / GUEST_ENV).write_text("\n".join(env_lines) + "\n")


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


__all__ = ["Lab", "booted_lab", "list_labs", "start_lab", "stop_lab"]
