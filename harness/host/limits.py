"""Resource limits that bound device assignment: locked memory and open files."""

from __future__ import annotations

from dataclasses import dataclass

from harness.host.root import HostRoot

UNLIMITED = -1


@dataclass(frozen=True)
class Limit:
    soft: int  # UNLIMITED for "unlimited"
    hard: int

    @staticmethod
    def parse(text: str) -> Limit:
        def value(word: str) -> int:
            return UNLIMITED if word == "unlimited" else int(word)

        soft, hard = text.split()[:2]
        return Limit(value(soft), value(hard))

    def at_least(self, amount: int) -> bool:
        return self.soft == UNLIMITED or self.soft >= amount


@dataclass(frozen=True)
class Limits:
    memlock: Limit | None
    nofile: Limit | None
    source: str
    system_file_max: int | None
    qemu_conf_max_files: int | None

    @classmethod
    def read(cls, root: HostRoot) -> Limits:
        source = "/proc/self/limits"
        text = root.read_text(source) or ""
        found: dict[str, Limit] = {}
        for line in text.splitlines():
            for label, key in (("Max locked memory", "memlock"), ("Max open files", "nofile")):
                if line.startswith(label):
                    try:
                        found[key] = Limit.parse(line[len(label) :])
                    except ValueError:
                        raise root.error(
                            source, f"{line.strip()[:60]!r}, expected '{label}  SOFT HARD UNITS'"
                        ) from None
        file_max = root.read_stripped("/proc/sys/fs/file-max")
        return cls(
            memlock=found.get("memlock"),
            nofile=found.get("nofile"),
            source=source,
            system_file_max=int(file_max) if file_max and file_max.isdigit() else None,
            qemu_conf_max_files=_qemu_conf_int(root, "max_files"),
        )


def _qemu_conf_int(root: HostRoot, key: str) -> int | None:
    for line in (root.read_text("/etc/libvirt/qemu.conf") or "").splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and not line.lstrip().startswith("#"):
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None
