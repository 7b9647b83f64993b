"""Boot-loader configuration: what the kernel command line will be at the next boot."""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field

from harness.host.root import HostRoot

GRUB_DEFAULTS_FILES = ("/etc/default/grub", "/etc/sysconfig/grub")
GRUB_CFG_FILES = (
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/etc/grub2.cfg",
    "/etc/grub2-efi.cfg",
)
CMDLINE_KEYS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Misspelling:
    path: str
    line_number: int
    key: str
    suggestion: str


@dataclass
class GrubDefaults:
    path: str
    values: dict[str, str] = field(default_factory=dict)
    misspellings: list[Misspelling] = field(default_factory=list)

    @property
    def kernel_arguments(self) -> list[str]:
        return " ".join(self.values.get(key, "") for key in CMDLINE_KEYS).split()


def parse_grub_defaults(path: str, text: str) -> GrubDefaults:
    parsed = GrubDefaults(path)
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ASSIGNMENT.match(line)
        if match is None:
            continue
        key, raw = match.groups()
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            words = [raw.strip("\"'")]
        parsed.values[key] = " ".join(words)
        if key.startswith("GRUB_") and key not in CMDLINE_KEYS and key.startswith("GRUB_CMDLIN"):
            close = difflib.get_close_matches(key, CMDLINE_KEYS, n=1, cutoff=0.8)
            if close:
                parsed.misspellings.append(Misspelling(path, number, key, close[0]))
    return parsed


@dataclass
class BootLoader:
    defaults: list[GrubDefaults]
    generated: list[str]  # grub.cfg files present
    generated_kernel_lines: dict[str, list[str]]

    @classmethod
    def read(cls, root: HostRoot) -> BootLoader:
        defaults = [
            parse_grub_defaults(path, text)
            for path in GRUB_DEFAULTS_FILES
            if (text := root.read_text(path)) is not None
        ]
        generated = [path for path in GRUB_CFG_FILES if root.exists(path)]
        efi = [
            f"/boot/efi/EFI/{vendor}/grub.cfg"
            for vendor in root.listdir("/boot/efi/EFI")
            if root.exists(f"/boot/efi/EFI/{vendor}/grub.cfg")
        ]
        kernel_lines = {
            path: [
                line.strip()
                for line in (root.read_text(path) or "").splitlines()
                if line.strip().startswith(("linux ", "linuxefi ", "linux16 "))
            ]
            for path in generated + efi
        }
        return cls(defaults=defaults, generated=generated + efi, generated_kernel_lines=kernel_lines)

    @property
    def is_configured(self) -> bool:
        return bool(self.defaults or self.generated)

    def regenerate_command(self) -> str:
        """The command that turns the defaults file into the grub.cfg the firmware reads."""
        if any(d.path == "/etc/default/grub" for d in self.defaults) and not any(
            "grub2" in path for path in self.generated
        ):
            return "update-grub"
        if any(path.startswith("/boot/efi/") or path == "/etc/grub2-efi.cfg" for path in self.generated):
            return "grub2-mkconfig -o /etc/grub2-efi.cfg"
        return "grub2-mkconfig -o /etc/grub2.cfg"
