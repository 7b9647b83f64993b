"""Fast tests of the lab's SSH access: the spec key, the port forward, the per-lab keys and sshd files,
what lab.json records; and `validate --suite`, which the fleet plan uses. Nothing here boots or starts sshd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import EXIT_USAGE
from harness.lab.lab import Lab
from harness.lab.qemu import Ports, RuntimePaths, build_machine
from harness.lab.spec import SpecError, load_spec, parse_spec
from harness.lab.sshd import SESSION_HOME, SshdTree, read_banner, write_ssh_files

LABS = Path(__file__).resolve().parents[1] / "fixtures" / "labs"
BIN = Path(sys.executable).parent
MODELS = frozenset(
    {"nvme", "nvme-subsys", "e1000e", "e1000", "pcie-root-port", "pcie-pci-bridge", "intel-iommu"}
)


def _forwards(ports: Ports, tmp_path: Path) -> list[str]:
    paths = RuntimePaths(tmp_path, tmp_path, tmp_path, tmp_path / "k", tmp_path / "i")
    plan = build_machine(load_spec(LABS / "fleet.toml"), paths, ports, accel="tcg", models=MODELS, warn=print)
    user = [a for a in plan.argv if a.startswith("user,")]
    assert len(user) == 1, user
    return [part for part in user[0].split(",") if part.startswith("hostfwd=")]


def test_ssh_is_off_unless_the_spec_or_the_caller_asks() -> None:
    assert load_spec(LABS / "default.toml").access.ssh is False
    assert load_spec(LABS / "fleet.toml").access.ssh is True
    with pytest.raises(SpecError, match=r"'access.ssh' = 'yes': expected true or false"):
        parse_spec({"access": {"ssh": "yes"}})
    with pytest.raises(SpecError, match=r"'access.port'"):
        parse_spec({"access": {"port": 22}})


def test_sshd_is_forwarded_on_loopback_only_when_the_lab_has_one(tmp_path: Path) -> None:
    assert (
        _forwards(Ports(40001, 40002, ssh=40003), tmp_path)[-1] == "hostfwd=tcp:127.0.0.1:40003-10.0.2.15:22"
    )
    assert len(_forwards(Ports(40001, 40002), tmp_path)) == 2


def test_each_lab_gets_its_own_private_keys_and_a_pinned_host_key(tmp_path: Path) -> None:
    tree = SshdTree("OpenSSH_9.2", tmp_path / "cache" / "sshd" / "root")
    accesses = []
    for name in ("one", "two"):
        state = tmp_path / name
        state.mkdir()
        accesses.append(write_ssh_files(state, name, 40100, tree))
    first, second = accesses
    assert first.key.read_text() != second.key.read_text(), "two labs must not share a key"
    for access in accesses:
        ssh_dir = access.key.parent
        assert ssh_dir.stat().st_mode & 0o777 == 0o700
        for private in (access.key, ssh_dir / "ssh_host_ed25519_key", ssh_dir / "authorized_keys"):
            assert private.stat().st_mode & 0o777 == 0o600, private
        assert (ssh_dir / "authorized_keys").read_text() == access.key.with_suffix(".pub").read_text()
        host_public = (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert access.known_hosts.read_text().split() == ["[127.0.0.1]:40100", *host_public]
        config = (ssh_dir / "sshd_config").read_text()
        for line in (
            "ListenAddress 10.0.2.15:22", "PasswordAuthentication no", "PermitRootLogin prohibit-password",
            "AuthorizedKeysFile /run/hostdev-lab/ssh/authorized_keys", f"SetEnv HOME={SESSION_HOME}",
        ):  # fmt: skip
            assert line in config.splitlines(), line
        script = (ssh_dir.parent / "sshd.sh").read_text()
        assert f"LD_LIBRARY_PATH={tree.library_path}" in script and f"{tree.sshd} -D -e" in script
        assert "StrictHostKeyChecking=yes" in access.command and access.command[-1] == "root@127.0.0.1"


def test_lab_json_records_the_ssh_access_and_status_shows_it(tmp_path: Path) -> None:
    tree = SshdTree("OpenSSH_9.2", tmp_path / "root")
    state = tmp_path / "state" / "lab1"
    state.mkdir(parents=True)
    access = write_ssh_files(state, "lab1", 40200, tree)
    Lab(name="lab1", state_dir=state, ports=Ports(1, 2, ssh=40200), ssh=access, status="ready").save()
    loaded = Lab.load("lab1", tmp_path / "state")
    assert loaded.ssh == access and loaded.ports.ssh == 40200
    shown = subprocess.run(
        [BIN / "hostdev-lab", "status", "lab1"], capture_output=True, text=True,
        env={"HOSTDEV_LAB_STATE": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert f"ssh: port 40200, user root, key {access.key}" in shown.stdout, shown.stdout + shown.stderr


def test_a_port_without_an_ssh_banner_is_not_an_sshd() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert read_banner(port, timeout=0.5) is None  # accepted, nothing said: QEMU's forward before sshd


def test_validate_runs_named_suites_and_refuses_unknown_ones(tmp_path: Path) -> None:
    bad = subprocess.run(
        [BIN / "hostdev-harness", "validate", "--suite", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == EXIT_USAGE and "no shipped suite named 'nope'" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and "preparation" in bad.stderr
    snapshot = Path(__file__).resolve().parents[1] / "fixtures" / "hosts" / "synthetic-intel-iommu-on"
    collected = subprocess.run(
        [BIN / "hostdev-harness", "validate", "--suite", "preparation", "--snapshot", str(snapshot),
         "--report-dir", str(tmp_path), "--", "--co", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    files = {line.split("::")[0].rsplit("/", 1)[-1] for line in collected.stdout.splitlines() if "::" in line}
    assert files == {"test_preparation.py"}, collected.stdout[-2000:]
