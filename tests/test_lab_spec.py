"""Fast tests of the lab's pure parts: spec parsing and errors, the QEMU command line, igb detection,
device discovery from a sysfs listing. Nothing here boots a machine."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.lab import l1_qemu
from harness.lab.devices import discover_devices
from harness.lab.guest_init import early_text, stage2_text
from harness.lab.kernel import KernelImage
from harness.lab.l1_qemu import (
    L1Qemu,
    QemuBinary,
    QemuFetchError,
    apt_mirror,
    available_device_models,
    choose_l1_qemu,
    ensure_newer_qemu,
    qemu_version,
)
from harness.lab.lab import Lab
from harness.lab.paths import LAB_QEMU_ENV, LAB_SKIPPED_ENV
from harness.lab.qemu import (
    TCG_CPU_MODEL,
    Ports,
    QemuError,
    RuntimePaths,
    build_machine,
    kernel_command_line,
    wanted_models,
)
from harness.lab.spec import DEFAULT_CMDLINE, SpecError, load_spec, parse_spec

LABS = Path(__file__).resolve().parents[1] / "fixtures" / "labs"
MODELS_72 = frozenset(
    {
        "nvme",
        "nvme-subsys",
        "e1000e",
        "e1000",
        "pcie-root-port",
        "pcie-pci-bridge",
        "intel-iommu",
        "amd-iommu",
    }
)
MODELS_80 = MODELS_72 | {"igb"}


def _paths(tmp_path: Path) -> RuntimePaths:
    return RuntimePaths(
        state_dir=tmp_path / "state" / "t",
        reports_dir=tmp_path / "reports",
        qemu_cache_dir=tmp_path / "qemu-cache",
        kernel=tmp_path / "vmlinuz",
        initramfs=tmp_path / "initramfs.cpio",
    )


def _build(
    spec_name: str,
    tmp_path: Path,
    models: frozenset[str] = MODELS_72,
    accel: str = "tcg",
    qemu: L1Qemu | None = None,
):
    warnings: list[str] = []
    plan = build_machine(
        load_spec(LABS / spec_name), _paths(tmp_path), Ports(40001, 40002), accel=accel, models=models,
        l1_qemu=qemu, warn=warnings.append,
    )  # fmt: skip
    return plan, warnings


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


@pytest.mark.parametrize("spec_file", sorted(p.name for p in LABS.glob("*.toml")))
def test_every_shipped_spec_loads(spec_file: str) -> None:
    spec = load_spec(LABS / spec_file)
    assert spec.name == spec_file.removesuffix(".toml"), (
        f"{spec_file}: name {spec.name!r} differs from the file"
    )
    assert spec.machine.type == "q35"


def test_default_spec_has_the_promised_devices() -> None:
    spec = load_spec(LABS / "default.toml")
    kinds = [device.kind for device in spec.devices]
    assert spec.kernel.args == DEFAULT_CMDLINE.split()
    assert spec.iommu.model == "intel" and spec.iommu.intremap
    assert kinds.count("e1000e") >= 2, kinds
    assert {"nvme-sriov", "pci-bridge", "igb", "root-port"} <= set(kinds), kinds


@pytest.mark.parametrize(
    ("spec_file", "expected_args", "iommu_device"),
    [
        ("no-iommu.toml", ["intel_iommu=on", "iommu=pt"], None),
        ("iommu-off.toml", ["intel_iommu=off"], "intel-iommu,intremap=on,caching-mode=on"),
        ("intremap-off.toml", ["intel_iommu=on", "iommu=pt"], "intel-iommu,intremap=off,caching-mode=on"),
        (
            "unsafe-interrupts.toml",
            ["intel_iommu=on", "iommu=pt", "vfio_iommu_type1.allow_unsafe_interrupts=1"],
            "intel-iommu,intremap=off,caching-mode=on",
        ),
        (
            "vfio-blacklisted.toml",
            ["intel_iommu=on", "iommu=pt", "module_blacklist=vfio_pci"],
            "intel-iommu,",
        ),
        ("amd-vi.toml", ["iommu=pt"], "amd-iommu,intremap=on"),
        ("amd-vi-qemu72.toml", ["iommu=pt"], "amd-iommu,intremap=on"),
        ("amd-iommu-off.toml", ["amd_iommu=off"], "amd-iommu,intremap=on"),
        ("amd-intremap-off.toml", ["iommu=pt"], "amd-iommu,intremap=off"),
    ],
)
def test_fault_specs_inject_their_fault(
    spec_file: str, expected_args: list[str], iommu_device: str | None, tmp_path: Path
) -> None:
    plan, _ = _build(spec_file, tmp_path)
    append = plan.argv[plan.argv.index("-append") + 1]
    assert append.split()[-len(expected_args) :] == expected_args, append
    iommu = [device for device in _devices(plan.argv) if device.startswith(("intel-iommu", "amd-iommu"))]
    if iommu_device is None:
        assert iommu == [], f"{spec_file} must not have an IOMMU: {iommu}"
    else:
        assert len(iommu) == 1 and iommu[0].startswith(iommu_device), iommu


def _spec(**tables: object) -> dict[str, object]:
    return {"name": "t", **tables}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_spec(machine={"type": "pc"}), "'machine.type' = 'pc'"),
        (_spec(machine={"memory_mib": 64}), "'machine.memory_mib' = 64"),
        (_spec(machine={"cpus": "2"}), "'machine.cpus' = '2'"),
        (_spec(machine={"ram": 1024}), "'machine.ram'"),
        (_spec(iommu={"model": "smmuv3"}), "'iommu.model' = 'smmuv3'"),
        (_spec(iommu={"xtsup": True}), "'iommu.xtsup' = True: xtsup is an amd-iommu option"),
        (_spec(machine={"qemu": "latest"}), "'machine.qemu' = 'latest'"),
        (_spec(iommu={"intremap": "yes"}), "'iommu.intremap' = 'yes'"),
        (_spec(iommu={"model": "none", "intremap": True}), "'iommu.intremap'"),
        (_spec(kernel={"extra_args": "iommu=pt"}), "'kernel.extra_args' = 'iommu=pt'"),
        (_spec(kernel={"cmdline": "console=tty0"}), "'console=tty0'"),
        (_spec(devices=[{"kind": "virtio-gpu"}]), "'devices[0].kind' = 'virtio-gpu'"),
        (_spec(devices=[{"kind": "nvme-sriov", "max_vfs": 99}]), "'devices[0].max_vfs' = 99"),
        (
            _spec(devices=[{"kind": "e1000e", "count": 2}]),
            "'devices[0].count' = 2: unknown key for kind 'e1000e'",
        ),
        (_spec(devices=[{"kind": "pci-bridge", "endpoints": ["nvme"]}]), "'devices[0].endpoints'"),
        (
            _spec(devices=[{"kind": "e1000e", "id": "a"}, {"kind": "e1000", "id": "a"}]),
            "'devices[].id' = 'a'",
        ),
        (_spec(flavour="x"), "'flavour'"),
        ({"name": "Bad Name"}, "'name' = 'Bad Name'"),
    ],
)
def test_bad_spec_names_key_and_value(data: dict[str, object], named: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(data, source="inline.toml")
    assert named in str(caught.value), f"expected the error to name {named}, got: {caught.value}"
    assert str(caught.value).startswith("inline.toml:"), caught.value


def test_bad_toml_and_missing_file_are_spec_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[machine\nmemory_mib = 1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(broken)
    with pytest.raises(SpecError, match="no such lab spec"):
        load_spec(tmp_path / "absent.toml")


def test_base_merges_tables_and_rejects_loops(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('base = "b.toml"\n[machine]\ncpus = 1\n')
    (tmp_path / "b.toml").write_text('name = "b"\n[machine]\nmemory_mib = 2048\ncpus = 2\n')
    spec = load_spec(tmp_path / "a.toml")
    assert (spec.name, spec.machine.memory_mib, spec.machine.cpus) == ("a", 2048, 1)
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(SpecError, match="loops"):
        load_spec(tmp_path / "a.toml")


def test_command_line_forwards_only_loopback_and_shares_the_root_read_only(tmp_path: Path) -> None:
    plan, _ = _build("default.toml", tmp_path)
    argv = plan.argv
    netdev = argv[argv.index("-netdev", argv.index("-append")) + 1]
    user = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev" and argv[i + 1].startswith("user,")]
    assert len(user) == 1, user
    forwards = [part for part in user[0].split(",") if part.startswith("hostfwd=")]
    assert forwards == [
        "hostfwd=tcp:127.0.0.1:40001-10.0.2.15:16509",
        "hostfwd=tcp:127.0.0.1:40002-10.0.2.15:7000",
    ], netdev
    assert "restrict=on" in user[0]
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    root = [f for f in fsdevs if ",path=/," in f]
    assert root and "readonly=on" in root[0] and "multidevs=remap" in root[0], fsdevs
    reports = [f for f in fsdevs if f.startswith("local,id=fs-reports")]
    assert reports and "readonly" not in reports[0], fsdevs
    # The IOMMU must precede every PCI device it translates for.
    devices = _devices(argv)
    assert devices[0].startswith("intel-iommu"), devices[:2]
    assert argv[argv.index("-accel") + 1].startswith("tcg") and argv[argv.index("-cpu") + 1] == TCG_CPU_MODEL


def test_default_topology_and_allowlist(tmp_path: Path) -> None:
    plan, _ = _build("default.toml", tmp_path)
    devices = _devices(plan.argv)
    nvme = [d for d in devices if d.startswith("nvme,")]
    assert len(nvme) == 1 and "sriov_max_vfs=4" in nvme[0] and "subsys=" in nvme[0], nvme
    # Each e1000e alone behind its own root port; two endpoints share the bridge.
    for nic in ("nic0", "nic1"):
        assert any(d.startswith(f"e1000e,id={nic},bus=rp-{nic},") for d in devices), devices
    assert sum(",bus=bridge0," in d for d in devices) == 2, devices
    roles = {d.id: d.role for d in plan.devices}
    assert roles["bridge0"] == "bridge" and roles["hotplug-0"] == "free-root-port"
    assignable = sorted(d.id for d in plan.devices if d.assignable)
    assert assignable == ["bridge0-ep0", "bridge0-ep1", "nic0", "nic1", "nvme0"], assignable


def test_igb_missing_is_announced_and_skipped(tmp_path: Path) -> None:
    plan, warnings = _build("default.toml", tmp_path, models=MODELS_72)
    assert list(plan.skipped) == ["sriovnic0"] and "has no 'igb' device" in plan.skipped["sriovnic0"]
    assert len(warnings) == 1 and "igb is missing" in warnings[0], warnings
    assert not any(d.startswith("igb") for d in _devices(plan.argv))


def test_igb_present_gets_its_own_root_port(tmp_path: Path) -> None:
    plan, warnings = _build("default.toml", tmp_path, models=MODELS_80)
    assert warnings == [] and plan.skipped == {}
    assert any(d.startswith("igb,id=sriovnic0,bus=rp-sriovnic0") for d in _devices(plan.argv))
    assert "sriovnic0" in [d.id for d in plan.devices if d.assignable]


def test_required_igb_without_qemu_support_is_an_error(tmp_path: Path) -> None:
    spec = parse_spec({"name": "t", "devices": [{"kind": "igb", "id": "vfnic"}]})
    with pytest.raises(QemuError, match="igb"):
        build_machine(spec, _paths(tmp_path), Ports(1, 2), accel="tcg", models=MODELS_72, warn=print)


def test_device_models_are_probed_one_by_one() -> None:
    """``-device MODEL,help`` exits 0 for unknown models too: the probe must read what QEMU printed."""
    models = available_device_models(QemuBinary())
    assert {"e1000e", "nvme", "pcie-root-port", "intel-iommu", "amd-iommu"} <= models, (
        f"qemu-system-x86_64 -device MODEL,help: found only {sorted(models)}; is QEMU installed?"
    )
    major = int(qemu_version(QemuBinary()).split(".")[0])
    assert ("igb" in models) == (major >= 8), f"QEMU {major}.x and igb in {sorted(models)}"
    # What QEMU 7.2 does for a model it lacks: says so on stderr and exits 0.
    says_not_found = QemuBinary(
        prefix=("sh", "-c", "echo \"Device '${5%,help}' not found\" >&2; exit 0", "qemu")
    )
    assert available_device_models(says_not_found) == frozenset()


FETCHED = QemuBinary.from_tree(Path("/cache/qemu/trixie/root"))


def test_l1_qemu_auto_fetches_only_when_a_model_is_missing(tmp_path: Path) -> None:
    fetched: list[Path] = []

    def fake_fetch(cache: Path, _log: object) -> QemuBinary:
        fetched.append(cache)
        return FETCHED

    spec = load_spec(LABS / "default.toml")
    has_all = choose_l1_qemu(
        wanted_models(spec), tmp_path, print, fetch=fake_fetch, models_of=lambda _b: MODELS_80
    )
    assert (has_all.origin, fetched) == ("machine", []), has_all
    assert "igb included" in has_all.reason
    lacks_igb = choose_l1_qemu(
        wanted_models(spec), tmp_path, print, fetch=fake_fetch, models_of=lambda _b: MODELS_72
    )
    assert lacks_igb.origin == "fetched" and lacks_igb.binary == FETCHED and fetched == [tmp_path]
    assert "has no igb" in lacks_igb.reason, lacks_igb.reason
    forced = choose_l1_qemu(
        {"e1000e"}, tmp_path, print, choice="machine", fetch=fake_fetch, models_of=lambda _b: MODELS_72
    )
    assert forced.origin == "machine" and len(fetched) == 1


def test_fetched_qemu_runs_with_its_own_loader_and_module_dir(tmp_path: Path) -> None:
    qemu = L1Qemu(FETCHED, "10.0.13", "fetched", "test")
    plan, _ = _build("default.toml", tmp_path, models=MODELS_80, qemu=qemu)
    assert plan.argv[:4] == [
        "/cache/qemu/trixie/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "--library-path",
        "/cache/qemu/trixie/root/usr/lib/x86_64-linux-gnu",
        "/cache/qemu/trixie/root/usr/bin/qemu-system-x86_64",
    ], plan.argv[:6]
    assert plan.env == {"QEMU_MODULE_DIR": "/cache/qemu/trixie/root/usr/lib/x86_64-linux-gnu/qemu"}


def test_failed_fetch_boots_without_igb_and_names_why(tmp_path: Path) -> None:
    def failing_fetch(_cache: Path, _log: object) -> QemuBinary:
        raise QemuFetchError(
            "mmdebstrap trixie from http://127.0.0.1:9/debian failed (25): E: Failed to fetch"
        )

    logged: list[str] = []
    spec = load_spec(LABS / "default.toml")
    qemu = choose_l1_qemu(
        wanted_models(spec), tmp_path, logged.append, fetch=failing_fetch, models_of=lambda _b: MODELS_72
    )
    assert qemu.origin == "machine" and qemu.fetch_error and "Failed to fetch" in qemu.fetch_error
    plan, warnings = _build("default.toml", tmp_path, models=MODELS_72, qemu=qemu)
    why = plan.skipped["sriovnic0"]
    assert "has no 'igb' device" in why and "could not be fetched" in why and "127.0.0.1:9" in why, why
    assert any("could not be fetched" in line for line in logged + warnings)
    lab = Lab(
        name="t", state_dir=tmp_path, ports=Ports(1, 2), skipped_reasons=plan.skipped, l1_qemu=qemu.to_json()
    )
    assert lab.guest_env[LAB_SKIPPED_ENV].startswith("sriovnic0: QEMU 7.2.22 has no 'igb' device")
    assert lab.guest_env[LAB_QEMU_ENV].startswith("QEMU 7.2.22 (machine): fallback: the machine's QEMU")


def test_fetch_from_an_unreachable_mirror_fails_with_apts_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (make deps)")
    monkeypatch.setattr(l1_qemu, "PROGRESS_INTERVAL", 0.2)
    logged: list[str] = []
    with pytest.raises(QemuFetchError) as caught:
        ensure_newer_qemu(tmp_path, logged.append, mirror="file:///nonexistent/debian")
    assert "file:///nonexistent/debian" in str(caught.value) and "E: " in str(caught.value), caught.value
    assert any(line.startswith("hostdev-lab: fetching QEMU (trixie): ") for line in logged), logged
    assert not (tmp_path / "qemu" / "trixie" / "stamp.json").exists()
    assert [p.name for p in (tmp_path / "qemu" / "trixie").iterdir()] == [], "the failed fetch left files"


def test_mirror_comes_from_the_machines_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(l1_qemu.MIRROR_ENV, raising=False)
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://old.example/debian bookworm main\ndeb [arch=amd64] https://one.example/debian bookworm main\n"
    )
    assert apt_mirror([deb822]) == "http://mirror.example/debian"
    assert apt_mirror([one_line, deb822]) == "https://one.example/debian"
    assert apt_mirror([tmp_path / "absent"]) == "http://deb.debian.org/debian"
    monkeypatch.setenv(l1_qemu.MIRROR_ENV, "http://127.0.0.1:9/debian")
    assert apt_mirror([deb822]) == "http://127.0.0.1:9/debian"


def test_kvm_with_intremap_uses_split_irqchip(tmp_path: Path) -> None:
    plan, _ = _build("default.toml", tmp_path, accel="kvm")
    assert plan.argv[plan.argv.index("-machine") + 1] == "q35,kernel-irqchip=split"
    assert plan.argv[plan.argv.index("-cpu") + 1] == "host"


def test_kernel_command_line_keeps_lab_args_first() -> None:
    spec = load_spec(LABS / "vfio-blacklisted.toml")
    line = kernel_command_line(spec)
    assert line.startswith("console=ttyS0"), line
    assert line.endswith("module_blacklist=vfio_pci"), line


def test_stage2_mounts_reports_at_the_same_path(tmp_path: Path) -> None:
    kernel = KernelImage("linux-image-6.1.0-1-amd64", "6.1.0-1-amd64", tmp_path / "k")
    early = early_text("t", kernel, Path("/work/x/reports"))
    assert 'reports "$root"/work/x/reports' in early, early
    stage2 = stage2_text("t", ["nvme"])
    assert "libvirtd --listen" in stage2 and "systemd-udevd --daemon" in stage2


def test_discovery_maps_topology_to_guest_bdfs(tmp_path: Path) -> None:
    plan, _ = _build("default.toml", tmp_path)
    listing = "\n".join(
        [
            "/sys/devices/pci0000:00/0000:00:02.0 virtio-pci",
            "/sys/devices/pci0000:00/0000:00:08.0 pcieport",
            "/sys/devices/pci0000:00/0000:00:08.0/0000:01:00.0 nvme",
            "/sys/devices/pci0000:00/0000:00:09.0/0000:02:00.0 e1000e",
            "/sys/devices/pci0000:00/0000:00:0a.0/0000:03:00.0 e1000e",
            "/sys/devices/pci0000:00/0000:00:0b.0/0000:04:00.0 ",
            "/sys/devices/pci0000:00/0000:00:0b.0/0000:04:00.0/0000:05:01.0 e1000",
            "/sys/devices/pci0000:00/0000:00:0b.0/0000:04:00.0/0000:05:02.0 e1000",
            "/sys/devices/pci0000:00/0000:00:0c.0 pcieport",
        ]
    )
    discover_devices(plan.devices, listing)
    found = {d.id: d.guest_bdf for d in plan.devices}
    assert found["nvme0"] == "0000:01:00.0"
    assert found["bridge0"] == "0000:04:00.0"
    assert found["bridge0-ep1"] == "0000:05:02.0"
    assert found["hotplug-0"] == "0000:00:0c.0"
    assert found["hotplug-1"] is None


def test_junit_host_properties_say_which_qemu_runs_l1(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lab.report_properties import lab_host_properties as host_properties

    monkeypatch.delenv(LAB_QEMU_ENV, raising=False)
    monkeypatch.delenv(LAB_SKIPPED_ENV, raising=False)
    assert "lab_l1_qemu" not in host_properties()
    monkeypatch.setenv(LAB_QEMU_ENV, "QEMU 10.0.13 (fetched): the machine's QEMU 7.2.22 has no igb")
    monkeypatch.setenv(LAB_SKIPPED_ENV, "sriovnic0: QEMU 7.2.22 has no 'igb' device")
    properties = host_properties()
    assert properties["lab_l1_qemu"] == "QEMU 10.0.13 (fetched): the machine's QEMU 7.2.22 has no igb"
    assert properties["lab_skipped_devices"] == "sriovnic0: QEMU 7.2.22 has no 'igb' device"


def test_isolation_spec_has_ports_with_and_without_acs_and_a_multifunction_device(tmp_path: Path) -> None:
    plan, _ = _build("isolation.toml", tmp_path)
    ports = {d.split(",")[1]: d for d in _devices(plan.argv) if d.startswith("pcie-root-port")}
    assert "disable-acs=on" not in ports["id=rp-acs0"] and "disable-acs=on" in ports["id=rp-noacs0"], ports
    functions = [d for d in _devices(plan.argv) if "bus=rp-mf0" in d]
    assert [f.split(",")[3] for f in functions] == ["addr=00.0", "addr=00.1"], functions
    assert "multifunction=on" in functions[0] and "multifunction=on" not in functions[1], functions
    assert {d.id: d.topology for d in plan.devices if d.kind == "multifunction"} == {
        "mf0-f0": ["0a.0", "00.0"],
        "mf0-f1": ["0a.0", "00.1"],
    }


@pytest.mark.parametrize(
    ("device", "named"),
    [
        ({"kind": "multifunction", "functions": ["e1000e"]}, "'devices[0].functions' = ['e1000e']"),
        ({"kind": "multifunction", "functions": ["nvme", "e1000"]}, "'devices[0].functions'"),
        ({"kind": "e1000e", "root_port_acs": "no"}, "'devices[0].root_port_acs' = 'no'"),
    ],
)
def test_bad_isolation_keys_are_named(device: dict[str, object], named: str) -> None:
    with pytest.raises(SpecError, match=re.escape(named)):
        parse_spec({"name": "t", "devices": [device]}, source="inline.toml")


def test_a_new_lab_device_kind_is_one_class(tmp_path: Path) -> None:
    """A subclass registers its kind: the spec accepts it (with its keys), the machine plans it, L1 loads its driver."""
    from harness.lab.devices import KINDS, DeviceKind, l1_drivers

    class Watchdog(DeviceKind, kind="test-watchdog"):
        model = "i6300esb"
        qemu_models = ("i6300esb",)
        keys = frozenset({"count"})
        driver = "i6300esb"

        @classmethod
        def read(cls, spec, raw, prefix):
            return {"count": spec.integer(raw, "count", prefix, 1, 2, default=1)}

        @classmethod
        def below_port(cls, device, plan, port_id, topology):
            plan.argv += ["-device", f"i6300esb,id={device.id},bus={port_id}"]
            plan.add(device.id, device.kind, cls.model, "test", port_id, [topology, "00.0"])

    try:
        with pytest.raises(SpecError, match=re.escape("'devices[0].count' = 3")):
            parse_spec({"name": "t", "devices": [{"kind": "test-watchdog", "count": 3}]})
        spec = parse_spec({"name": "t", "devices": [{"kind": "test-watchdog"}]})
        assert spec.devices[0].id == "test-watchdog0"
        plan = build_machine(
            spec, _paths(tmp_path), Ports(1, 2), accel="tcg", models=MODELS_72 | {"i6300esb"}, warn=print
        )
        assert "i6300esb,id=test-watchdog0,bus=rp-test-watchdog0" in _devices(plan.argv)
        assert l1_drivers(d.model for d in plan.devices) == ["i6300esb"]
        with pytest.raises(TypeError, match="registered twice"):
            type("Again", (DeviceKind,), {}, kind="test-watchdog")
    finally:
        del KINDS["test-watchdog"]
