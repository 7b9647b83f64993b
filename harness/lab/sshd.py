"""An optional sshd inside L1, reached only on L0's loopback through a QEMU user-net port forward.

L1 shares L0's root read-only, and this machine (L0) must not get an sshd of its own, so the daemon comes
from Debian's ``openssh-server`` package fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into ``<cache>/sshd/<version>/root`` (nothing is installed on L0, nothing starts there).
``libwrap0``, which the binary links and a machine without openssh-server may lack, comes along and is
found through ``LD_LIBRARY_PATH``. L1 sees the unpacked tree at the same path through the shared root.

Each lab gets its own host key and its own client key (``<state dir>/ssh/``, mode 0600, made on L0 with
``ssh-keygen``); the state dir is L1's read-only ``/run/hostdev-lab``, where sshd reads its config, host key
and ``authorized_keys``. ``lab.json`` records the port, user, key and a ``known_hosts`` file that pins the
host key, so clients (tmt, plain ssh) can check the host rather than trust it on first use.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.lab.kernel import GUEST_IP, GUEST_LAB_DIR, KernelError, download_debs
from harness.lab.qemu import GUEST_SSH_PORT

SSHD_PACKAGES = ("openssh-server", "openssh-sftp-server", "libwrap0")
SSH_USER = "root"
SSH_DIR = "ssh"  # below the lab's state dir (L1: /run/hostdev-lab/ssh)
_LIBDIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
# HOME of SSH sessions in L1: an empty folder. bash sources ~/.bashrc for every command run over SSH, and
# L0's root's .bashrc may be slow (pyenv init: 16 s per command under TCG here; tmt sends dozens).
SESSION_HOME = "/run/hostdev-lab-ssh-home"

Log = Callable[[str], None]


class SshdError(KernelError):
    """The lab's sshd could not be fetched, checked or given its keys; the message says which step."""


@dataclass(frozen=True)
class SshdTree:
    """openssh-server unpacked into the lab cache (visible in L1 at the same path)."""

    version: str
    root: Path

    @property
    def sshd(self) -> Path:
        return self.root / "usr" / "sbin" / "sshd"

    @property
    def sftp_server(self) -> Path:
        return self.root / "usr" / "lib" / "openssh" / "sftp-server"

    @property
    def library_path(self) -> str:
        return ":".join(str(self.root / libdir) for libdir in _LIBDIRS)


@dataclass(frozen=True)
class SshAccess:
    """How a client on L0 logs in to a lab's L1: what ``lab.json`` records under ``ssh``."""

    port: int
    user: str
    key: Path
    known_hosts: Path

    @property
    def command(self) -> list[str]:
        """An ``ssh`` command line that logs in with the lab's key and checks its pinned host key."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            f"{self.user}@127.0.0.1",
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "user": self.user,
            "key": str(self.key),
            "known_hosts": str(self.known_hosts),
            "command": shlex.join(self.command),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SshAccess:
        return cls(int(data["port"]), str(data["user"]), Path(data["key"]), Path(data["known_hosts"]))


def _run(argv: list[str], what: str) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SshdError(
            f"{argv[0]} is not installed ({what}; Debian: apt-get install openssh-client)"
        ) from None
    if result.returncode != 0:
        raise SshdError(f"{what}: `{shlex.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout + result.stderr


def _check(tree: SshdTree) -> str:
    """The unpacked sshd finds every library and says its version (``-V`` starts no daemon)."""
    env_prefix = ["env", f"LD_LIBRARY_PATH={tree.library_path}"]
    missing = [
        line.split()[0]
        for line in _run([*env_prefix, "ldd", str(tree.sshd)], "checking the lab's sshd").splitlines()
        if "not found" in line
    ]
    if missing:
        raise SshdError(f"{tree.sshd} needs libraries neither L0 nor {tree.root} has: {', '.join(missing)}")
    version = _run([*env_prefix, str(tree.sshd), "-V"], "checking the lab's sshd").strip().splitlines()
    return version[-1] if version else "unknown"


def ensure_sshd(cache: Path, log: Log) -> SshdTree:
    """Return the cached sshd tree, fetching and checking it the first time (about 0.6 MB)."""
    base = cache / "sshd"
    stamp = base / "stamp.json"
    if stamp.exists():
        meta = json.loads(stamp.read_text())
        tree = SshdTree(meta["version"], Path(meta["root"]))
        if tree.sshd.exists():
            return tree
    log(
        f"hostdev-lab: fetching {', '.join(SSHD_PACKAGES)} for the lab's sshd (first run; cached under {base})"
    )
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=".download-") as scratch:
        scratch_dir = Path(scratch)
        unpacked = scratch_dir / "root"
        for deb in download_debs(list(SSHD_PACKAGES), scratch_dir):
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"unpacking {deb.name}")
        version = _check(SshdTree("unchecked", unpacked))
        target = base / "root"
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    tree = SshdTree(version, target)
    stamp.write_text(json.dumps({"version": version, "root": str(target), "packages": SSHD_PACKAGES}) + "\n")
    log(f"hostdev-lab: the lab's sshd is {version} ({tree.sshd})")
    return tree


def _keygen(path: Path, comment: str) -> None:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], f"making {path}")
    path.chmod(0o600)


def sshd_config(tree: SshdTree) -> str:
    guest_dir = f"{GUEST_LAB_DIR}/{SSH_DIR}"
    return f"""# hostdev-lab: L1's sshd, reached only through L0's loopback port forward. Written by L0.
ListenAddress {GUEST_IP}:{GUEST_SSH_PORT}
HostKey {guest_dir}/ssh_host_ed25519_key
AuthorizedKeysFile {guest_dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM: L0's root has no /etc/pam.d/sshd (openssh-server is not installed there).
UsePAM no
UseDNS no
PrintMotd no
PidFile /run/sshd.pid
AcceptEnv LANG LC_* HARNESS_* HOSTDEV_*
SetEnv HOME={SESSION_HOME}
Subsystem sftp {tree.sftp_server}
"""


def sshd_start_script(tree: SshdTree) -> str:
    """Run by stage2 in L1: privilege separation needs an ``sshd`` user and ``/run/sshd`` (L1's overlay only)."""
    q = shlex.quote
    return f"""#!/bin/sh
# hostdev-lab: start L1's sshd in the foreground (stage2 supervises it). Written by L0, read-only here.
mkdir -p -m 0755 /run/sshd
mkdir -p -m 0700 {SESSION_HOME}
if ! grep -q '^sshd:' /etc/passwd; then
    uid=100
    while cut -d: -f3 /etc/passwd | grep -qx "$uid"; do uid=$((uid + 1)); done
    echo "sshd:x:$uid:65534:hostdev-lab sshd privilege separation:/run/sshd:/usr/sbin/nologin" >> /etc/passwd
fi
# Without PAM, sshd refuses a locked account ('!' password) even for key logins: unlock root in L1's copy.
sed -i 's/^root:![^:]*:/root:*:/' /etc/shadow
exec env LD_LIBRARY_PATH={q(tree.library_path)} {q(str(tree.sshd))} -D -e -f {GUEST_LAB_DIR}/{SSH_DIR}/sshd_config
"""


def write_ssh_files(state_dir: Path, lab_name: str, port: int, tree: SshdTree) -> SshAccess:
    """Keys, sshd config, authorized key, known_hosts and the start script, all in the lab's state dir."""
    ssh_dir = state_dir / SSH_DIR
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    host_key = ssh_dir / "ssh_host_ed25519_key"
    client_key = ssh_dir / "id_ed25519"
    _keygen(host_key, f"hostdev-lab {lab_name} host key")
    _keygen(client_key, f"hostdev-lab {lab_name} client key")
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    host_public = host_key.with_name(host_key.name + ".pub").read_text().split()
    known_hosts = ssh_dir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    (ssh_dir / "sshd_config").write_text(sshd_config(tree))
    script = state_dir / "sshd.sh"
    script.write_text(sshd_start_script(tree))
    script.chmod(0o755)
    return SshAccess(port=port, user=SSH_USER, key=client_key, known_hosts=known_hosts)


def read_banner(port: int, timeout: float = 15.0) -> str | None:
    """The SSH banner on ``127.0.0.1:port``, or None: QEMU's forward accepts connections before L1's
    sshd listens (then closes them at once), so only the banner shows that sshd answers. The timeout is
    long because sshd re-executes itself per connection, which takes seconds under TCG on a busy host."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    text = data.decode(errors="replace").strip()
    return text if text.startswith("SSH-") else None
