"""Where the lab keeps its caches, the state of running labs and reports (all three are settings).

From a checkout everything stays in the checkout (``.cache/lab``, ``reports/``); installed from a wheel,
nothing is written into site-packages: the cache goes to XDG (or ``/var/cache`` for root) and reports to
the current directory. Running labs are namespaced per user and checkout, so ``down --all`` stops only
the caller's own labs.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from pathlib import Path

from harness.errors import HarnessInputError

# The checkout this package runs from: the nested host shares L0's root, so this path is the same in L1.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

CACHE_ENV = "HOSTDEV_LAB_CACHE"
STATE_ENV = "HOSTDEV_LAB_STATE"
REPORTS_ENV = "HOSTDEV_LAB_REPORTS"
# Set in L1 for suites and reports: which QEMU runs L1 and why, and which planned devices are missing and why.
LAB_QEMU_ENV = "HOSTDEV_LAB_QEMU"
LAB_SKIPPED_ENV = "HOSTDEV_LAB_SKIPPED"


def running_from_checkout() -> bool:
    """True in a git checkout (editable install), False for a wheel installed into site-packages."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "harness").is_dir()


def cache_dir() -> Path:
    """Kernel, initramfs, accelerator probe and L1's libvirt capability cache live here.

    ``$HOSTDEV_LAB_CACHE`` wins, then ``$XDG_CACHE_HOME/hostdev-lab``, then ``<checkout>/.cache/lab``;
    installed: ``/var/cache/hostdev-lab`` for root, ``~/.cache/hostdev-lab`` for others.
    """
    if value := os.environ.get(CACHE_ENV):
        return Path(value).resolve()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).resolve() / "hostdev-lab"
    if running_from_checkout():
        return PROJECT_ROOT / ".cache" / "lab"
    if os.geteuid() == 0:
        return Path("/var/cache/hostdev-lab")
    return Path.home() / ".cache" / "hostdev-lab"


def lab_namespace() -> str:
    """``<user>-<8 hex of the checkout path>``: labs of other users and other checkouts live elsewhere."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.geteuid())
    checkout = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:8]
    return f"{user}-{checkout}"


def state_root() -> Path:
    """One directory per running lab of this user and checkout.

    ``$HOSTDEV_LAB_STATE`` wins (taken as is), else ``/run/hostdev-lab/<namespace>`` (root), else
    ``<cache>/state/<namespace>``.
    """
    if value := os.environ.get(STATE_ENV):
        return Path(value).resolve()
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "hostdev-lab" / lab_namespace()
    return cache_dir() / "state" / lab_namespace()


def reports_dir() -> Path:
    """The directory shared writable into L1 at the same absolute path."""
    if value := os.environ.get(REPORTS_ENV):
        return Path(value).resolve()
    if running_from_checkout():
        return PROJECT_ROOT / "reports"
    return Path.cwd() / "reports"


# A lab name is one path component: \Z, not $, so "name\n" is refused too.
LAB_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
# Written into a state dir when the lab machinery creates it; nothing without it is ever removed.
STATE_MARKER = ".hostdev-lab-state"
# The files of a lab's state dir (see harness.lab.state); the dir is L1's read-only /run/hostdev-lab too.
LAB_JSON = "lab.json"  # the public description (harness.lab.state.LabState.to_json)
CONSOLE_LOG = "console.log"  # L1's serial console
QEMU_LOG = "qemu.log"  # QEMU's own stdout and stderr
QEMU_PID = "qemu.pid"
QMP_SOCKET = "qmp.sock"
QEMU_ARGV = "qemu.argv"  # the command line, as a shell would run it
GUEST_ENV = "env"  # what L1's shells export (HARNESS_ALLOW, ...)


def lab_state_dir(name: str, root: Path | None = None) -> Path:
    """The state dir of lab ``name`` inside ``root`` (default :func:`state_root`), or HarnessInputError."""
    if not LAB_NAME_PATTERN.fullmatch(name):
        raise HarnessInputError(
            f"bad lab name {name!r}: use lower-case letters, digits, '.', '_' or '-' (see hostdev-lab status)"
        )
    base = (root or state_root()).resolve()
    candidate = base / name
    if candidate.resolve().parent != base:
        raise HarnessInputError(
            f"lab {name!r}: {candidate} resolves outside the lab state root {base}; remove that link by hand"
        )
    return candidate


def removable_state_dir(state_dir: Path) -> bool:
    """True only for a real dir directly inside a state root that carries the marker the lab wrote."""
    return (
        not state_dir.is_symlink()
        and state_dir.is_dir()
        and (state_dir / STATE_MARKER).is_file()
        and LAB_NAME_PATTERN.fullmatch(state_dir.name) is not None
    )
