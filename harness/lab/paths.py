"""Where the lab keeps its caches and the state of running labs (both are settings)."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout this package runs from: the nested host shares L0's root, so this path is the same in L1.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

CACHE_ENV = "HOSTDEV_LAB_CACHE"
STATE_ENV = "HOSTDEV_LAB_STATE"
REPORTS_ENV = "HOSTDEV_LAB_REPORTS"


def cache_dir() -> Path:
    """Kernel, initramfs, accelerator probe and L1's libvirt capability cache live here.

    ``$HOSTDEV_LAB_CACHE`` wins, then ``$XDG_CACHE_HOME/hostdev-lab``, then ``<repo>/.cache/lab``.
    """
    if value := os.environ.get(CACHE_ENV):
        return Path(value).resolve()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).resolve() / "hostdev-lab"
    return PROJECT_ROOT / ".cache" / "lab"


def state_root() -> Path:
    """One directory per running lab: ``$HOSTDEV_LAB_STATE``, else /run/hostdev-lab (root), else the cache."""
    if value := os.environ.get(STATE_ENV):
        return Path(value).resolve()
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "hostdev-lab"
    return cache_dir() / "state"


def reports_dir() -> Path:
    """The directory shared writable into L1 at the same absolute path."""
    if value := os.environ.get(REPORTS_ENV):
        return Path(value).resolve()
    return PROJECT_ROOT / "reports"
