"""Which QEMU runs L1: the machine's own, or a newer one the lab unpacks into its cache when it must.

Debian 12's QEMU 7.2 has no ``igb`` (an SR-IOV NIC, QEMU >= 8.0). A lab that asks for one then runs L1
on Debian 13's ``qemu-system-x86``, unpacked with ``mmdebstrap --variant=extract`` (no change to the
machine's apt configuration) into ``<cache>/qemu/<suite>/`` and run with that tree's own dynamic loader and
libraries. L1's own libvirt keeps the machine's QEMU for L2 guests (L1 shares L0's root, where only the
machine's QEMU is installed).

Module pitfall: QEMU falls back to the machine's module folder (QEMU 7.2's) for modules its own folder
lacks and aborts ("Only modules from the same build can be loaded"). The lab's command line loads no module
(no display, audio, USB or GPU); device models are probed one by one (``-device MODEL,help``) instead of
``-device help``, which loads them all. A bind mount over the module folder is not an option: L1 sees L0's
root through this QEMU's 9p share, and its L2 guests need QEMU 7.2's modules there.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessEnvironmentError
from harness.lab.devices import probed_models

MACHINE_QEMU = "qemu-system-x86_64"
NEWER_QEMU_SUITE = "trixie"
NEWER_QEMU_PACKAGE = "qemu-system-x86"
MIRROR_ENV = "HOSTDEV_LAB_QEMU_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
FETCH_TIMEOUT = 900.0
PROGRESS_INTERVAL = 3.0
_LIBDIR = "usr/lib/x86_64-linux-gnu"

Log = Callable[[str], None]


class QemuFetchError(HarnessEnvironmentError):
    """The newer QEMU could not be fetched or did not pass its check; the message says which step failed."""


@dataclass(frozen=True)
class QemuBinary:
    """How to start one QEMU: the argv prefix (loader, binary, firmware paths) and its environment."""

    prefix: tuple[str, ...] = (MACHINE_QEMU,)
    env: tuple[tuple[str, str], ...] = ()  # a tuple, not a dict: the value is hashable (cache keys)
    root: str | None = None  # the unpacked tree of a fetched QEMU; None for the machine's own

    @classmethod
    def from_tree(cls, root: Path) -> QemuBinary:
        libdir = root / _LIBDIR
        return cls(
            prefix=(
                str(libdir / "ld-linux-x86-64.so.2"),
                "--library-path",
                str(libdir),
                str(root / "usr" / "bin" / MACHINE_QEMU),
                "-L",
                str(root / "usr" / "share" / "qemu"),
                "-L",
                str(root / "usr" / "share" / "seabios"),
            ),
            env=(("QEMU_MODULE_DIR", str(libdir / "qemu")),),
            root=str(root),
        )

    def run(self, args: Iterable[str], *, stdin: str | None = None, timeout: float = 60.0) -> tuple[int, str]:
        """Run this QEMU with ``args``; (exit code, stdout + stderr)."""
        try:
            result = subprocess.run(
                [*self.prefix, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **dict(self.env)},
                check=False,
            )
        except FileNotFoundError:
            return 127, f"{self.prefix[0]} not found"
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout:.0f}s"
        return result.returncode, result.stdout + result.stderr


@functools.cache
def qemu_version(binary: QemuBinary = QemuBinary()) -> str:
    _rc, output = binary.run(["--version"])
    match = re.search(r"version (\S+)", output)
    return match.group(1) if match else "unknown"


@functools.cache
def available_device_models(binary: QemuBinary = QemuBinary()) -> frozenset[str]:
    """Which of the lab's device models this QEMU has (``-device MODEL,help`` lists a known model's options;
    it exits 0 for an unknown one too, saying "Device 'MODEL' not found")."""
    found = set()
    # Every device model a lab can use, probed one by one (see the module docstring).
    for model in probed_models():
        rc, output = binary.run(["-nodefaults", "-machine", "none", "-device", f"{model},help"])
        if rc == 0 and f"Device '{model}' not found" not in output and model in output:
            found.add(model)
    return frozenset(found)


@dataclass(frozen=True)
class L1Qemu:
    """The QEMU chosen for L1 and why; ``lab.json``, ``hostdev-lab status`` and JUnit reports show it."""

    binary: QemuBinary
    version: str
    origin: str  # "machine" or "fetched"
    reason: str
    # Set when the lab wanted the newer QEMU and could not have it: why (the igb tests name it).
    fetch_error: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """What ``lab.json`` records (``l1_qemu``)."""
        return {
            "version": self.version,
            "origin": self.origin,
            "reason": self.reason,
            "root": self.binary.root,
            "fetch_error": self.fetch_error,
        }


def apt_mirror(sources: Iterable[Path] | None = None) -> str:
    """The Debian mirror this machine's apt sources name (``$HOSTDEV_LAB_QEMU_MIRROR`` wins)."""
    if value := os.environ.get(MIRROR_ENV):
        return value
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        candidates: list[str]
        if path.suffix == ".sources":  # deb822: "URIs: http://... " lines
            uris = re.findall(r"^URIs:\s*(.+)$", text, flags=re.MULTILINE)
            candidates = [uri for line in uris for uri in line.split()]
        else:  # one-line style: deb [options] URI suite components
            candidates = [
                word
                for line in text.splitlines()
                if line.split()[:1] == ["deb"]
                for word in line.split()[1:]
                if "://" in word
            ]
        for uri in candidates:
            if "security" not in uri and "debian" in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _report_progress(target: Path, started: float, done: threading.Event, log: Log) -> None:
    while not done.wait(PROGRESS_INTERVAL):
        size = _tree_size(target) / 1e6 if target.exists() else 0.0
        log(
            f"hostdev-lab: fetching QEMU ({NEWER_QEMU_SUITE}): {size:.0f} MB, {time.monotonic() - started:.0f} s"
        )


def _pci_ids(buses: object) -> set[str]:
    """Every ``qdev_id`` in a QMP ``query-pci`` answer, behind bridges too."""
    found: set[str] = set()
    for bus in buses if isinstance(buses, list) else []:
        for device in bus.get("devices", []):
            found.add(device.get("qdev_id", ""))
            found |= _pci_ids([device.get("pci_bridge", {}).get("bus", {})])
    return found


def verify_igb(binary: QemuBinary) -> str:
    """Start a q35 machine (paused) with an igb on the root bus and find it in QMP ``query-pci``."""
    commands = "".join(
        json.dumps(message) + "\n"
        for message in ({"execute": "qmp_capabilities"}, {"execute": "query-pci"}, {"execute": "quit"})
    )
    args = [
        "-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio",
        "-netdev", "hubport,id=check0,hubid=0", "-device", "igb,id=igb-check,bus=pcie.0,netdev=check0",
    ]  # fmt: skip
    rc, output = binary.run(args, stdin=commands, timeout=60)
    answers = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError):
            answers.append(json.loads(line))
    listed = set().union(*(_pci_ids(a["return"]) for a in answers if isinstance(a.get("return"), list)))
    if "igb-check" not in listed:
        raise QemuFetchError(
            f"QEMU in {binary.root} did not list an igb in query-pci (exit {rc}): {output[-600:]}"
        )
    return "q35 with -device igb started; query-pci lists it"


def ensure_newer_qemu(cache: Path, log: Log, *, mirror: str | None = None) -> QemuBinary:
    """The cached newer QEMU; fetch, verify and stamp it the first time."""
    home = cache / "qemu" / NEWER_QEMU_SUITE
    stamp = home / "stamp.json"
    tree = home / "root"
    if stamp.exists() and (tree / "usr" / "bin" / MACHINE_QEMU).exists():
        return QemuBinary.from_tree(tree)
    if shutil.which("mmdebstrap") is None:
        raise QemuFetchError(
            "mmdebstrap is not installed (make deps installs it; Debian: apt-get install mmdebstrap)"
        )
    source = mirror or apt_mirror()
    home.mkdir(parents=True, exist_ok=True)
    log(
        f"hostdev-lab: this QEMU ({qemu_version()}) has no igb: fetching {NEWER_QEMU_PACKAGE} from Debian "
        f"{NEWER_QEMU_SUITE} ({source}) into {home} (once; about 170 MB)"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as scratch:
        target = Path(scratch) / "root"
        done = threading.Event()
        progress = threading.Thread(target=_report_progress, args=(target, started, done, log), daemon=True)
        progress.start()
        try:
            result = subprocess.run(
                ["mmdebstrap", "--variant=extract", f"--include={NEWER_QEMU_PACKAGE}",
                 NEWER_QEMU_SUITE, str(target), source],
                capture_output=True, text=True, timeout=FETCH_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise QemuFetchError(
                f"mmdebstrap from {source} did not finish within {FETCH_TIMEOUT:.0f}s"
            ) from None
        finally:
            done.set()
            progress.join()
        if result.returncode != 0:
            lines = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("E: ")]
            raise QemuFetchError(
                f"mmdebstrap {NEWER_QEMU_SUITE} from {source} failed ({result.returncode}): "
                + " | ".join(lines[:2] or ["no error lines; see mmdebstrap's output"])
            )
        binary = QemuBinary.from_tree(target)
        version = qemu_version(binary)
        if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 8:
            raise QemuFetchError(f"the unpacked QEMU answers --version with {version!r}, not >= 8.0")
        evidence = verify_igb(binary)
        size_mb = _tree_size(target) / 1e6
        seconds = time.monotonic() - started
        shutil.rmtree(tree, ignore_errors=True)
        target.rename(tree)
    stamp.write_text(
        json.dumps(
            {
                "suite": NEWER_QEMU_SUITE,
                "package": NEWER_QEMU_PACKAGE,
                "mirror": source,
                "version": version,
                "size_mb": round(size_mb),
                "fetch_s": round(seconds, 1),
                "verified": evidence,
            },
            indent=2,
        )
        + "\n"
    )
    log(f"hostdev-lab: QEMU {version} ready in {tree} ({size_mb:.0f} MB, {seconds:.0f} s; {evidence})")
    return QemuBinary.from_tree(tree)


def choose_l1_qemu(
    wanted_models: Iterable[str],
    cache: Path,
    log: Log,
    *,
    choice: str = "auto",
    fetch: Callable[[Path, Log], QemuBinary] = ensure_newer_qemu,
    models_of: Callable[[QemuBinary], frozenset[str]] = available_device_models,
) -> L1Qemu:
    """The QEMU L1 runs on; falls back to the machine's (with ``fetch_error`` set) when the fetch fails."""
    wanted = set(wanted_models)
    machine = QemuBinary()
    machine_version = qemu_version(machine)
    missing = sorted(wanted - models_of(machine))
    if choice == "machine":
        return L1Qemu(machine, machine_version, "machine", "the lab spec asks for the machine's QEMU")
    if choice == "auto" and not missing:
        reason = "it has every device model this lab uses" + (" (igb included)" if "igb" in wanted else "")
        return L1Qemu(machine, machine_version, "machine", reason)
    why = (
        f"the machine's QEMU {machine_version} has no {', '.join(missing)}"
        if missing
        else "the lab spec asks for the newer QEMU"
    )
    try:
        binary = fetch(cache, log)
    except QemuFetchError as exc:
        error = f"{why}, and the newer QEMU could not be fetched: {exc}"
        log(f"hostdev-lab: {error}")
        return L1Qemu(machine, machine_version, "machine", f"fallback: {error}", fetch_error=error)
    return L1Qemu(binary, qemu_version(binary), "fetched", why)
