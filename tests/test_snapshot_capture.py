"""A snapshot of this machine: redacted (and says what it redacted), refused over other files, readable back."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from harness.host.snapshot import Redactions

BIN = Path(sys.executable).parent


def test_redactions_blank_what_identifies_a_host() -> None:
    redactions = Redactions("labhost7")
    dmesg = (
        "eth0: 52:54:00:12:34:56 link up at 10.1.2.3 on labhost7\n"
        "nvme0: Serial Number: S4EWNX0N123456\n"
        "root=UUID=0b9e1c52-6f3e-4c8d-9a57-3f1e2d4c5b6a vme vmx\n"
    )
    text = redactions.text("/.harness/dmesg.txt", dmesg)
    for secret in ("52:54:00:12:34:56", "10.1.2.3", "labhost7", "S4EWNX0N123456", "0b9e1c52"):
        assert secret not in text, f"{secret} survived: {text}"
    assert "vme vmx" in text, "CPU flags must survive hostname redaction"
    conf = redactions.qemu_conf("/etc/libvirt/qemu.conf", 'vnc_password = "hunter2"\nmax_files = 32768\n')
    assert conf == "max_files = 32768\n"
    route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
    route += "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\neth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
    kept = redactions.routes("/proc/net/route", route).splitlines()
    assert kept[1].split("\t")[:3] == ["eth0", "00000000", "00000000"] and len(kept) == 2
    listing = "\n".join(redactions.listing())
    for what in (
        "hostname",
        "MAC addresses",
        "IPv4 addresses",
        "serial numbers",
        "UUIDs",
        "every setting but",
    ):
        assert what in listing, f"{what} not listed: {listing}"


def test_snapshot_of_this_machine(tmp_path: Path) -> None:
    snapshot = tmp_path / "snap"
    taken = subprocess.run(
        [BIN / "hostdev-harness", "snapshot", str(snapshot)], capture_output=True, text=True, timeout=300
    )
    assert taken.returncode == 0, taken.stderr
    manifest = json.loads((snapshot / ".harness/manifest.json").read_text())
    assert manifest["format"] == "hostdev-harness-snapshot" and manifest["redacted"], manifest
    # The daemon search is recorded, found or not: without it a snapshot's limits say "not captured".
    daemons = json.loads((snapshot / ".harness/daemons.json").read_text())
    assert all((snapshot / f"proc/{pid}/limits").is_file() for pid in daemons["found"]), daemons
    # As a whole word: a hostname as short as "vm" is also part of unrelated words ("vme", "kvm").
    hostname = re.compile(rf"(?<![\w.-]){re.escape(socket.gethostname())}(?![\w-])")
    leaks = [p for p in snapshot.rglob("*") if p.is_file() and hostname.search(p.read_text(errors="replace"))]
    assert not leaks, f"the hostname {socket.gethostname()!r} is still in {leaks}"
    again = subprocess.run(
        [BIN / "hostdev-harness", "snapshot", str(snapshot)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr
    check = subprocess.run(
        [BIN / "hostdev-harness", "check", "--json", "--snapshot", str(snapshot)],
        capture_output=True,
        text=True,
    )
    assert check.returncode in (0, 1) and json.loads(check.stdout), check.stderr
