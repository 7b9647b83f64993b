"""Run libvirtd without systemd, leaving the machine's own /etc and services untouched.

Used twice: on a machine where no libvirtd answers, the harness starts a private one in its own
mount namespace for the run; inside a nested host the lab starts one that listens on TCP.
libvirt 9 needs a ``libvirt-qemu`` user and group (Debian's libvirt-daemon-system creates them) and
virtlogd running before any domain can start.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from harness.errors import HarnessEnvironmentError
from harness.libvirt.connection import answers, is_local_system_uri, open_connection

if TYPE_CHECKING:
    from harness.progress import Progress

# Directories libvirtd writes to; a private daemon gets its own copy of each, bind-mounted in place.
LIBVIRT_DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")

# qemu.conf settings that let the qemu driver run as root without systemd, cgroups or a security driver.
QEMU_CONF_SETTINGS = {
    "user": '"root"',
    "group": '"root"',
    "security_driver": '"none"',
    "cgroup_controllers": "[ ]",
    "namespaces": "[ ]",
    "dynamic_ownership": "0",
    "remember_owner": "0",
}


class LibvirtdError(HarnessEnvironmentError):
    """libvirtd could not be started; the message carries the tail of its log."""


def qemu_conf_text(extra: dict[str, str] | None = None) -> str:
    settings = {**QEMU_CONF_SETTINGS, **(extra or {})}
    lines = ["# written by hostdev-harness: libvirtd without systemd, as root"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def libvirtd_conf_text(tcp_listen_addr: str | None) -> str:
    lines = ["# written by hostdev-harness", 'unix_sock_group = "root"', 'unix_sock_rw_perms = "0770"']
    if tcp_listen_addr is not None:
        # Only ever reached through a loopback port forward on the outer machine.
        lines += [
            "listen_tls = 0",
            "listen_tcp = 1",
            'auth_tcp = "none"',
            f'listen_addr = "{tcp_listen_addr}"',
        ]
    return "\n".join(lines) + "\n"


def write_config(etc_libvirt: Path, *, tcp_listen_addr: str | None = None) -> None:
    """Write qemu.conf and libvirtd.conf for a root, systemd-less daemon into ``etc_libvirt``."""
    etc_libvirt.mkdir(parents=True, exist_ok=True)
    (etc_libvirt / "qemu.conf").write_text(qemu_conf_text())
    (etc_libvirt / "libvirtd.conf").write_text(libvirtd_conf_text(tcp_listen_addr))


def socket_uri(run_dir: Path) -> str:
    return f"qemu:///system?socket={run_dir / 'libvirt-sock'}"


@dataclass
class PrivateLibvirtd:
    """A libvirtd (and virtlogd) in a private mount namespace, state under ``state_dir``."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    owns_state_dir: bool = False
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.state_dir / "libvirtd.log"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run" / "libvirt"

    @property
    def uri(self) -> str:
        return socket_uri(self.run_dir)

    def _prepare(self) -> None:
        for directory in LIBVIRT_DIRS:
            target = self.state_dir / directory.lstrip("/")
            if directory == "/etc/libvirt" and Path(directory).is_dir():
                shutil.copytree(directory, target, dirs_exist_ok=True, symlinks=True)
            target.mkdir(parents=True, exist_ok=True)
        write_config(self.state_dir / "etc" / "libvirt")
        # A fresh daemon autostarts nothing: no default network, no leftover domains.
        for autostart in (self.state_dir / "etc/libvirt").glob("**/autostart"):
            shutil.rmtree(autostart, ignore_errors=True)

    def _script(self) -> str:
        mounts = [
            f"mount --bind {shlex.quote(str(self.state_dir / d.lstrip('/')))} {d}"
            for d in LIBVIRT_DIRS
            if Path(d).is_dir() or d == "/run/libvirt"
        ]
        # Set before anything starts, so that a signal during the start stops what already runs. The shell is
        # also told when its parent dies (PR_SET_PDEATHSIG, see start()): a run killed by SIGTERM or SIGKILL
        # leaves no daemon and, for a state directory it made, no directory either.
        cleanup = "kill $daemon $logd 2>/dev/null || true; wait || true"
        if self.owns_state_dir:
            cleanup += f"; rm -rf -- {shlex.quote(str(self.state_dir))}"
        return "\n".join(
            [
                "daemon= logd=",
                f"trap '{cleanup}; exit 0' TERM INT HUP",
                "set -e",
                "mkdir -p /run/libvirt",
                *mounts,
                # Pid files of their own, so that private daemons of parallel workers can coexist.
                "virtlogd --pid-file /run/libvirt/virtlogd.pid & logd=$!",
                "libvirtd --pid-file /run/libvirt/libvirtd.pid & daemon=$!",
                # The shell stays their parent so that it reaps both: no zombies after stop().
                "wait $daemon",
                "kill $logd 2>/dev/null; wait",
            ]
        )

    def start(self, timeout: float = 30.0) -> None:
        if shutil.which("libvirtd") is None:
            raise LibvirtdError("libvirtd is not installed (Debian: apt-get install libvirt-daemon-system)")
        self._prepare()
        log = self._log.open("ab")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", self._script()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=functools.partial(_stop_when_parent_dies, os.getpid()),
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import libvirt

        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            if (self.run_dir / "libvirt-sock").exists():
                try:
                    libvirt.open(self.uri).close()
                    return
                except libvirt.libvirtError as exc:
                    last_error = str(exc)
            time.sleep(0.1)
        tail = self.log_tail()  # before stop() removes the state directory
        self.stop()
        raise LibvirtdError(
            f"private libvirtd did not answer within {timeout:.0f}s ({last_error or 'no socket'}); log tail:\n{tail}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)  # the shell stops and reaps the daemons
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self.owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _stop_when_parent_dies(parent: int) -> None:
    """In the child before exec: SIGTERM when the harness process ends, however it ends (kept across exec)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextmanager
def private_libvirtd(state_dir: Path | None = None, timeout: float = 30.0) -> Iterator[PrivateLibvirtd]:
    owns = state_dir is None
    directory = (
        Path(tempfile.mkdtemp(prefix="hostdev-libvirtd-", dir="/tmp")) if state_dir is None else state_dir
    )
    daemon = PrivateLibvirtd(directory, owns_state_dir=owns)
    try:
        daemon.start(timeout)  # inside: a Ctrl-C during the start stops what already started
        yield daemon
    finally:
        daemon.stop()


@contextmanager
def private_libvirtd_for(
    uri: str, starting: Callable[[], AbstractContextManager[Progress | None]] = nullcontext
) -> Iterator[PrivateLibvirtd | None]:
    """Which libvirt a run talks to, decided in this one place: None when ``uri`` is not this machine's system
    URI or a libvirtd answers there (talk to ``uri``); else a private libvirtd, started for the run (inside
    ``starting``: a progress line, told where the daemon listens) and stopped on exit."""
    if not is_local_system_uri(uri) or answers(uri):
        yield None
        return
    with ExitStack() as stack:
        with starting() as step:
            daemon = stack.enter_context(private_libvirtd())
            if step is not None:
                step.done(f"private libvirtd at {daemon.uri}")
        yield daemon


@contextmanager
def connected(uri: str) -> Iterator[libvirt.virConnect]:
    """A connection to ``uri``; on this machine's system URI with no libvirtd answering, a private one's."""
    with private_libvirtd_for(uri) as daemon:
        connection = open_connection(daemon.uri if daemon else uri)
        try:
            yield connection
        finally:
            connection.close()
