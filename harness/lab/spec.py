"""Lab specs: TOML files in fixtures/labs/ that describe the nested host's machine, IOMMU, kernel and devices.

Every key is checked before anything starts; a bad key or value raises :class:`SpecError` naming the file,
the key and the value. A spec may name a ``base`` spec (a path relative to itself): its tables are merged
key by key, and ``devices`` replaces the base's list when given.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.lab.devices import KINDS, spec_kinds

DEFAULT_CMDLINE = "intel_iommu=on iommu=pt"

MACHINE_TYPES = ("q35",)
IOMMU_MODELS = ("intel", "amd", "none")
# Which QEMU runs L1: auto = the machine's unless it lacks a device model the spec uses (see l1_qemu).
QEMU_CHOICES = ("auto", "machine", "newer")
_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,30}\Z")

_TOP_KEYS = {"name", "description", "base", "machine", "iommu", "kernel", "access", "devices"}
_ACCESS_KEYS = {"ssh"}
_MACHINE_KEYS = {"type", "memory_mib", "cpus", "tcg_tb_size_mib", "qemu"}
_IOMMU_KEYS = {"model", "intremap", "caching_mode", "xtsup"}
_KERNEL_KEYS = {"cmdline", "extra_args"}
# root_port_acs = false: the device's root port without ACS (QEMU's pcie-root-port,disable-acs=on).
_COMMON_DEVICE_KEYS = {"kind", "id", "optional", "root_port_acs"}


class SpecError(HarnessInputError):
    """A lab spec that cannot be used; the message names the file, the key and the offending value."""


@dataclass(frozen=True)
class MachineSpec:
    type: str = "q35"
    memory_mib: int = 1024
    cpus: int = 2
    # TCG's translation cache: QEMU's default (1 GiB) lets L1's QEMU grow past 1 GiB RSS under pytest.
    tcg_tb_size_mib: int = 256
    qemu: str = "auto"


@dataclass(frozen=True)
class IommuSpec:
    model: str = "intel"
    intremap: bool = True
    caching_mode: bool = True  # intel only
    xtsup: bool = False  # amd only: x2APIC interrupt remapping


@dataclass(frozen=True)
class KernelSpec:
    cmdline: str = DEFAULT_CMDLINE
    extra_args: tuple[str, ...] = ()

    @property
    def args(self) -> list[str]:
        """The test-visible part of the kernel command line (the lab adds its own boot arguments)."""
        return [*self.cmdline.split(), *self.extra_args]


@dataclass(frozen=True)
class AccessSpec:
    # An sshd in L1 on a loopback port of L0 (see harness/lab/sshd.py): for tools that drive hosts over
    # SSH, such as tmt's provision --how connect.
    ssh: bool = False


@dataclass(frozen=True)
class DeviceSpec:
    """One ``[[devices]]`` entry; ``kind`` names its class in :data:`harness.lab.devices.KINDS`."""

    kind: str
    id: str
    optional: bool = False
    max_vfs: int = 0
    endpoints: tuple[str, ...] = ()
    count: int = 1
    root_port_acs: bool = True
    functions: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    name: str
    path: Path | None
    description: str = ""
    machine: MachineSpec = field(default_factory=MachineSpec)
    iommu: IommuSpec = field(default_factory=IommuSpec)
    kernel: KernelSpec = field(default_factory=KernelSpec)
    access: AccessSpec = field(default_factory=AccessSpec)
    devices: tuple[DeviceSpec, ...] = ()


def load_spec(path: str | Path) -> LabSpec:
    """Read, merge (``base``) and validate a lab spec file."""
    spec_path = Path(path).resolve()
    data = _read_merged(spec_path, seen=())
    data.setdefault("name", spec_path.stem)
    return parse_spec(data, source=str(spec_path), path=spec_path)


def parse_spec(data: Mapping[str, Any], *, source: str = "<spec>", path: Path | None = None) -> LabSpec:
    """Validate an already-read (and merged) spec mapping."""
    where = SpecReader(source)
    where.unknown_keys(data, _TOP_KEYS, "")
    name = where.string(data, "name", "", default=path.stem if path else "lab")
    if not _ID_PATTERN.match(name):
        raise where.error("name", name, "use lowercase letters, digits and '-', starting with a letter")
    description = where.string(data, "description", "", default="")

    machine_data = where.table(data, "machine")
    where.unknown_keys(machine_data, _MACHINE_KEYS, "machine")
    machine = MachineSpec(
        type=where.choice(machine_data, "type", "machine", MACHINE_TYPES, default="q35"),
        memory_mib=where.integer(machine_data, "memory_mib", "machine", 256, 16384, default=1024),
        cpus=where.integer(machine_data, "cpus", "machine", 1, 16, default=2),
        tcg_tb_size_mib=where.integer(machine_data, "tcg_tb_size_mib", "machine", 32, 2048, default=256),
        qemu=where.choice(machine_data, "qemu", "machine", QEMU_CHOICES, default="auto"),
    )

    iommu_data = where.table(data, "iommu")
    where.unknown_keys(iommu_data, _IOMMU_KEYS, "iommu")
    iommu_model = where.choice(iommu_data, "model", "iommu", IOMMU_MODELS, default="intel")
    iommu = IommuSpec(
        model=iommu_model,
        intremap=where.boolean(iommu_data, "intremap", "iommu", default=True),
        # An intel-iommu option; ignored for other models (a spec based on default.toml inherits it).
        caching_mode=where.boolean(iommu_data, "caching_mode", "iommu", default=True)
        and iommu_model == "intel",
        xtsup=where.boolean(iommu_data, "xtsup", "iommu", default=False),
    )
    if iommu.model == "none" and "intremap" in iommu_data and iommu_data["intremap"]:
        raise where.error("iommu.intremap", True, "interrupt remapping needs iommu.model = 'intel' or 'amd'")
    if iommu.model != "amd" and iommu.xtsup:
        raise where.error("iommu.xtsup", True, "xtsup is an amd-iommu option")

    kernel_data = where.table(data, "kernel")
    where.unknown_keys(kernel_data, _KERNEL_KEYS, "kernel")
    cmdline = where.string(kernel_data, "cmdline", "kernel", default=DEFAULT_CMDLINE)
    extra = kernel_data.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(arg, str) and arg.strip() for arg in extra):
        raise where.error("kernel.extra_args", extra, "expected a list of non-empty strings")
    for arg in [*cmdline.split(), *extra]:
        if any(ch in arg for ch in "\"'\n") or arg.startswith(("rdinit=", "init=", "console=")):
            raise where.error("kernel", arg, "quotes, newlines, init= and console= are reserved for the lab")
    kernel = KernelSpec(cmdline=cmdline, extra_args=tuple(extra))

    access_data = where.table(data, "access")
    where.unknown_keys(access_data, _ACCESS_KEYS, "access")
    access = AccessSpec(ssh=where.boolean(access_data, "ssh", "access", default=False))

    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list) or not all(isinstance(d, dict) for d in raw_devices):
        raise where.error("devices", raw_devices, "expected an array of tables ([[devices]])")
    devices = tuple(_parse_device(where, index, raw) for index, raw in enumerate(raw_devices))
    ids = [device.id for device in devices]
    duplicates = sorted({device_id for device_id in ids if ids.count(device_id) > 1})
    if duplicates:
        raise where.error("devices[].id", duplicates[0], "device ids must be unique")

    return LabSpec(
        name=name,
        path=path,
        description=description,
        machine=machine,
        iommu=iommu,
        kernel=kernel,
        access=access,
        devices=devices,
    )


def _parse_device(where: SpecReader, index: int, raw: Mapping[str, Any]) -> DeviceSpec:
    prefix = f"devices[{index}]"
    kind = KINDS[where.choice(raw, "kind", prefix, spec_kinds(), default=None)]
    where.unknown_keys(raw, _COMMON_DEVICE_KEYS | kind.keys, prefix, context=f" for kind {kind.kind!r}")
    device_id = where.string(raw, "id", prefix, default=f"{kind.id_stem()}{index}")
    if not _ID_PATTERN.match(device_id):
        raise where.error(f"{prefix}.id", device_id, "use lowercase letters, digits and '-'")
    optional = where.boolean(raw, "optional", prefix, default=False)
    acs = where.boolean(raw, "root_port_acs", prefix, default=True)
    return DeviceSpec(
        kind=kind.kind, id=device_id, optional=optional, root_port_acs=acs, **kind.read(where, raw, prefix)
    )


def _read_merged(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if path in seen:
        raise SpecError(f"{path}: base = chain loops back to itself ({' -> '.join(map(str, seen))})")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such lab spec file; specs are in fixtures/labs/") from None
    except IsADirectoryError:
        raise SpecError(
            f"{path}: is a directory, not a lab spec; pass a .toml file from fixtures/labs/"
        ) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the lab spec: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); a lab spec is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise SpecError(f"{path}: key 'base' = {base!r}: expected a path to another spec")
    merged = _read_merged((path.parent / base).resolve(), (*seen, path))
    merged.pop("name", None)
    merged.pop("description", None)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class SpecReader:
    """Reads keys of one spec file; each error names the file, the key and the value (device kinds use it)."""

    source: str

    def error(self, key: str, value: object, why: str) -> SpecError:
        return SpecError(f"{self.source}: key {key!r} = {value!r}: {why}")

    def unknown_keys(
        self, data: Mapping[str, Any], allowed: Set[str], prefix: str, context: str = ""
    ) -> None:
        for key in data:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(_full(prefix, key), data[key], f"unknown key{context} (known: {known})")

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, value, "expected a table")
        return value

    def string(self, data: Mapping[str, Any], key: str, prefix: str, *, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise self.error(_full(prefix, key), value, "expected a string")
        return value

    def boolean(self, data: Mapping[str, Any], key: str, prefix: str, *, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(_full(prefix, key), value, "expected true or false")
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, prefix: str, low: int, high: int, *, default: int
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(_full(prefix, key), value, f"expected an integer from {low} to {high}")
        return value

    def models(
        self,
        data: Mapping[str, Any],
        key: str,
        prefix: str,
        choices: tuple[str, ...],
        low: int,
        default: list[str],
    ) -> list[str]:
        """A list of ``low`` to 8 device models, each one of ``choices``."""
        value = data.get(key, default)
        if not isinstance(value, list) or not low <= len(value) <= 8 or not all(m in choices for m in value):
            raise self.error(_full(prefix, key), value, f"expected {low}-8 of {', '.join(choices)}")
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, prefix: str, choices: tuple[str, ...], *, default: str | None
    ) -> str:
        value = data.get(key, default)
        if value not in choices:
            raise self.error(_full(prefix, key), value, f"expected one of {', '.join(choices)}")
        assert isinstance(value, str)
        return value


def _full(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
