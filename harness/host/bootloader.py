"""The next boot as the boot loader will see it: which boot path this host uses and the kernel arguments.

Three boot paths, each evaluated the way it really builds the command line:

- GRUB on Debian/Ubuntu: the firmware boots /boot/grub/grub.cfg, which ``update-grub`` (grub-mkconfig)
  writes from /etc/default/grub and then every /etc/default/grub.d/*.cfg, sourced in that order as shell
  (see :mod:`harness.host.shellvars`); a normal entry gets ``$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT``.
- GRUB with BootLoaderSpec entries on RHEL/Fedora: grub.cfg only says ``blscfg``; each kernel has
  /boot/loader/entries/*.conf whose ``options`` line may use ``$kernelopts`` from /boot/grub2/grubenv
  (RHEL 8); ``grubby`` edits them. /etc/default/grub only matters to a later ``grub2-mkconfig``.
- systemd-boot: entries in the EFI system partition's loader/entries/*.conf; ``kernel-install`` writes new
  ones from /etc/kernel/cmdline.

What the boot loader will read next (grub.cfg, the entries) is the next boot; the source files are what the
next regeneration or kernel update writes. Both are kept, each argument with the file and line it came from.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import re
from dataclasses import dataclass, field

from harness.host.root import HostRoot
from harness.host.shellvars import Assignment, Origin, ShellVariables, Word

DEBIAN_DEFAULTS = "/etc/default/grub"
DEBIAN_DEFAULTS_DIR = "/etc/default/grub.d"
RHEL_SYSCONFIG = "/etc/sysconfig/grub"
GRUB_CFG_FILES = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/etc/grub2.cfg", "/etc/grub2-efi.cfg")
GRUBENV_FILES = ("/boot/grub2/grubenv", "/boot/efi/EFI/fedora/grubenv", "/boot/efi/EFI/redhat/grubenv")
KERNEL_CMDLINE = "/etc/kernel/cmdline"
# Where systemd-boot's loader directory lives: the EFI system partition or XBOOTLDR mount points.
SYSTEMD_BOOT_DIRS = ("/efi/loader", "/boot/efi/loader", "/boot/loader")
BLS_ENTRIES = "/boot/loader/entries"
CMDLINE_KEYS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
# Variables grub-mkconfig and its scripts read (grub's own documentation and 10_linux); anything close to
# one of the command-line keys that is not in here is a typo grub ignores silently.
KNOWN_GRUB_KEYS = frozenset(
    {
        *CMDLINE_KEYS, "GRUB_CMDLINE_LINUX_RECOVERY", "GRUB_CMDLINE_XEN", "GRUB_CMDLINE_XEN_DEFAULT",
        "GRUB_CMDLINE_NETBSD", "GRUB_CMDLINE_NETBSD_DEFAULT", "GRUB_CMDLINE_GNUMACH", "GRUB_CMDLINE_LINUX_XEN_REPLACE",
        "GRUB_CMDLINE_LINUX_XEN_REPLACE_DEFAULT", "GRUB_DEFAULT", "GRUB_SAVEDEFAULT", "GRUB_TIMEOUT",
        "GRUB_TIMEOUT_STYLE", "GRUB_HIDDEN_TIMEOUT", "GRUB_DISTRIBUTOR", "GRUB_TERMINAL", "GRUB_TERMINAL_INPUT",
        "GRUB_TERMINAL_OUTPUT", "GRUB_SERIAL_COMMAND", "GRUB_DISABLE_RECOVERY", "GRUB_DISABLE_SUBMENU",
        "GRUB_DISABLE_OS_PROBER", "GRUB_ENABLE_BLSCFG", "GRUB_GFXMODE", "GRUB_GFXPAYLOAD_LINUX",
        "GRUB_DISABLE_LINUX_UUID", "GRUB_DISABLE_LINUX_PARTUUID", "GRUB_RECORDFAIL_TIMEOUT",
    }
)  # fmt: skip
# Kernel parameters that switch the IOMMU; each may be given several times and the last one wins
# (intel_iommu and amd_iommu take comma-separated options: intel_iommu=on,sm_on).
IOMMU_SWITCHES = ("intel_iommu", "amd_iommu", "iommu")


class BootPath(enum.StrEnum):
    GRUB_DEBIAN = "GRUB (Debian/Ubuntu: /etc/default/grub, update-grub)"
    GRUB_BLS = "GRUB with BootLoaderSpec entries (RHEL/Fedora: grubby)"
    SYSTEMD_BOOT = "systemd-boot (kernel-install, /etc/kernel/cmdline)"
    UNKNOWN = "no boot loader configuration found"


@dataclass(frozen=True)
class Misspelling:
    origin: Origin
    key: str
    suggestion: str


@dataclass(frozen=True)
class CommandLine:
    """Kernel arguments as one place will give them to the kernel, each with where it was written."""

    where: str  # "grub.cfg's first entry", "/boot/loader/entries/x.conf", ...
    words: tuple[Word, ...]

    @property
    def arguments(self) -> list[str]:
        return [word.text for word in self.words]

    def last(self, key: str) -> Word | None:
        """The last ``key=...`` argument (the one the kernel acts on), or None."""
        found = None
        for word in self.words:
            if word.text.partition("=")[0].replace("-", "_") == key:
                found = word
        return found

    def switched_on(self, argument: str) -> bool:
        """Whether ``key=on`` is in effect here (the last switch of that key says on)."""
        key = argument.partition("=")[0]
        return self.iommu_state().get(key, ("",))[0] == "on"

    def iommu_state(self) -> dict[str, tuple[str, Word]]:
        """For each IOMMU switch given, its effective value (on / off / pt / ...) and the word that set it."""
        state: dict[str, tuple[str, Word]] = {}
        for word in self.words:
            key, _, value = word.text.partition("=")
            if key not in IOMMU_SWITCHES:
                continue
            for option in value.split(","):
                if option in ("on", "off", "pt", "nopt", "force"):
                    state[key] = (option, word)
        return state


@dataclass
class BootConfiguration:
    """The boot path, the command line of the next boot, and the files that will rewrite it later."""

    path: BootPath
    next_boot: CommandLine | None = None
    # The command lines the next regeneration / kernel update will write (source files), by name.
    sources: list[CommandLine] = field(default_factory=list)
    misspellings: list[Misspelling] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)
    # The unevaluated statements that may change GRUB_CMDLINE_LINUX(_DEFAULT): with any, the value is unknown.
    cmdline_unknown: list[str] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    distribution: str = ""
    # GRUB_CMDLINE_LINUX(_DEFAULT) assignments in the order grub-mkconfig runs them.
    assignments: list[Assignment] = field(default_factory=list)

    def where_to_edit(self) -> str:
        """The file and line a person edits to change what the next regeneration writes."""
        if self.path is BootPath.SYSTEMD_BOOT:
            return KERNEL_CMDLINE
        if self.assignments:
            last = self.assignments[-1]
            return f"{last.key} in {last.origin.path} (line {last.origin.line})"
        return f"GRUB_CMDLINE_LINUX in {DEBIAN_DEFAULTS}"

    def undone(self, argument: str) -> tuple[Assignment, Assignment] | None:
        """An earlier assignment that had ``argument`` and the later one of the same key that dropped it."""
        final = {a.key: a for a in self.assignments}
        for earlier in self.assignments:
            later = final[earlier.key]
            if (
                later is not earlier
                and argument in earlier.text.split()
                and argument not in later.text.split()
            ):
                return earlier, later
        return None

    def source_of(self, word: Word) -> Origin:
        """Where a generated argument was written in the source files (the generated file's line if nowhere)."""
        found = word.origin
        for source in self.sources:
            for candidate in source.words:
                if candidate.text == word.text:
                    found = candidate.origin
        return found

    @property
    def is_configured(self) -> bool:
        return self.path is not BootPath.UNKNOWN

    def regenerate_command(self) -> str:
        """The command that turns the source files into what the boot loader reads, on this distribution."""
        if self.path is BootPath.GRUB_DEBIAN:
            return "update-grub"
        if self.path is BootPath.GRUB_BLS:
            return "grub2-mkconfig -o /boot/grub2/grub.cfg (RHEL 9.3+: add --update-bls-cmdline)"
        if self.path is BootPath.SYSTEMD_BOOT:
            return 'kernel-install add "$(uname -r)" "/boot/vmlinuz-$(uname -r)"'
        return "the boot loader's own tool"

    def add_command(self, arguments: str) -> str:
        """How to add ``arguments`` for the next boot on this path, without hand-editing generated files."""
        if self.path is BootPath.GRUB_BLS:
            return f'grubby --update-kernel=ALL --args="{arguments}"'
        return self.regenerate_command()

    def remove_command(self, arguments: str) -> str:
        if self.path is BootPath.GRUB_BLS:
            return f'grubby --update-kernel=ALL --remove-args="{arguments}"'
        return self.regenerate_command()


def _grub_misspellings(variables: ShellVariables) -> list[Misspelling]:
    """Assignments grub never reads whose name is close to a command-line key (any spelling, any case)."""
    found = []
    for assignment in variables.assignments:
        key = assignment.key
        if key in KNOWN_GRUB_KEYS:
            continue
        close = difflib.get_close_matches(key.upper(), CMDLINE_KEYS, n=1, cutoff=0.8)
        if close:
            found.append(Misspelling(assignment.origin, key, close[0]))
    return found


def read_grub_defaults(root: HostRoot, files: list[str]) -> ShellVariables:
    """Source ``files`` in order, as grub-mkconfig does (missing files are skipped)."""
    variables = ShellVariables()
    for path in files:
        text = root.read_text(path)
        if text is not None:
            variables.source(path, text)
    return variables


def grub_defaults_files(root: HostRoot) -> list[str]:
    """grub-mkconfig's order: /etc/default/grub, then /etc/default/grub.d/*.cfg in glob (C-locale) order."""
    snippets = [f"{DEBIAN_DEFAULTS_DIR}/{n}" for n in root.listdir(DEBIAN_DEFAULTS_DIR) if n.endswith(".cfg")]
    return [DEBIAN_DEFAULTS, *sorted(snippets)]


def _linux_lines(root: HostRoot, path: str) -> list[tuple[int, str]]:
    lines = []
    for number, line in enumerate((root.read_text(path) or "").splitlines(), start=1):
        if line.split()[:1] in (["linux"], ["linuxefi"], ["linux16"]):
            lines.append((number, line.strip()))
    return lines


def _words(path: str, line: int, text: str) -> tuple[Word, ...]:
    return tuple(Word(word, Origin(path, line)) for word in text.split())


def _key_values(text: str) -> list[tuple[int, str, str]]:
    """``key value`` lines (BLS entries, loader.conf, grubenv's ``key=value``), comments skipped."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_][\w-]*)(?:\s+|=)(.*)\Z", stripped)
        if match:
            found.append((number, match.group(1), match.group(2).strip()))
    return found


def _bls_entry(root: HostRoot, path: str, grubenv: dict[str, tuple[str, int, str]]) -> CommandLine:
    """An entry's ``options``, with ``$var`` taken from grubenv as grub's blscfg expands it."""
    words: list[Word] = []
    for number, key, value in _key_values(root.read_text(path) or ""):
        if key != "options":
            continue
        for token in value.split():
            variable = re.fullmatch(r"\$\{?(\w+)\}?", token)
            if variable:  # blscfg expands grubenv variables; an unset one is empty
                if variable.group(1) in grubenv:
                    env_path, env_line, env_value = grubenv[variable.group(1)]
                    words += _words(env_path, env_line, env_value)
            else:
                words.append(Word(token, Origin(path, number)))
    return CommandLine(path, tuple(words))


def _grubenv(root: HostRoot) -> tuple[str | None, dict[str, tuple[str, int, str]]]:
    for path in GRUBENV_FILES:
        text = root.read_text(path)
        if text is not None:
            values = {}
            for number, line in enumerate(text.splitlines(), start=1):
                key, sep, value = line.partition("=")
                if sep and not line.startswith("#"):
                    values[key] = (path, number, value)
            return path, values
    return None, {}


def _default_entry(entries: list[str], saved: str | None) -> str:
    """The entry booted by default: grubenv's saved_entry, else the newest (BLS sorts by version)."""
    for entry in entries:
        if saved and entry.rsplit("/", 1)[-1].removesuffix(".conf") == saved:
            return entry
    return sorted(entries, key=_version_key)[-1]


def _version_key(path: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", path)]


def _distribution(root: HostRoot) -> str:
    for _number, key, value in _key_values(root.read_text("/etc/os-release") or ""):
        if key == "PRETTY_NAME":
            return value.strip("\"'")
    return ""


def detect_boot_path(root: HostRoot) -> BootPath:
    grub2 = any(
        root.exists(p) for p in ("/boot/grub2", RHEL_SYSCONFIG, "/etc/grub2.cfg", "/etc/grub2-efi.cfg")
    )
    if root.listdir(BLS_ENTRIES) and (grub2 or root.exists(DEBIAN_DEFAULTS)) and not _systemd_boot_dir(root):
        return BootPath.GRUB_BLS
    if _systemd_boot_dir(root) is not None:
        return BootPath.SYSTEMD_BOOT
    if root.exists(DEBIAN_DEFAULTS) or any(root.exists(p) for p in GRUB_CFG_FILES) or grub2:
        return BootPath.GRUB_BLS if grub2 else BootPath.GRUB_DEBIAN
    if root.exists(KERNEL_CMDLINE):
        return BootPath.SYSTEMD_BOOT
    return BootPath.UNKNOWN


def _systemd_boot_dir(root: HostRoot) -> str | None:
    for directory in SYSTEMD_BOOT_DIRS:
        if root.exists(f"{directory}/loader.conf"):
            return directory
    return None


# `NAME="$(command)"` for a NAME that is not a command-line key: the command runs in a subshell, which
# cannot set the parent's variables, so only NAME is unknown (RHEL's GRUB_DISTRIBUTOR line).
_SUBSHELL_ASSIGNMENT = re.compile(
    r'\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)="\$\((?!\()[^"`]*\)"\s*(?:#.*)?'
)


def _leaves_cmdline_alone(text: str) -> bool:
    match = _SUBSHELL_ASSIGNMENT.fullmatch(text)
    return bool(match) and not any(key in text for key in CMDLINE_KEYS)


def read_boot_configuration(root: HostRoot) -> BootConfiguration:
    path = detect_boot_path(root)
    config = BootConfiguration(path, distribution=_distribution(root))
    if path is BootPath.UNKNOWN:
        return config
    if path in (BootPath.GRUB_DEBIAN, BootPath.GRUB_BLS):
        # On RHEL /etc/sysconfig/grub is a link to /etc/default/grub: read one of them, not both.
        rhel = [DEBIAN_DEFAULTS] if root.exists(DEBIAN_DEFAULTS) else [RHEL_SYSCONFIG]
        files = grub_defaults_files(root) if path is BootPath.GRUB_DEBIAN else rhel
        variables = read_grub_defaults(root, files)
        config.files_read += variables.sourced
        config.misspellings = _grub_misspellings(variables)
        config.assignments = [a for a in variables.assignments if a.key in CMDLINE_KEYS]
        config.unevaluated = [
            f"{u.origin}: {u.text.strip()} ({u.why}: not evaluated)" for u in variables.unevaluated
        ]
        config.cmdline_unknown = [
            f"{u.origin}: {u.text.strip()}"
            for u in variables.unevaluated
            if not _leaves_cmdline_alone(u.text)
        ]
        if variables.sourced:
            config.sources.append(
                CommandLine(" + ".join(variables.sourced), tuple(variables.words(*CMDLINE_KEYS)))
            )
    entries = [f"{BLS_ENTRIES}/{n}" for n in root.listdir(BLS_ENTRIES) if n.endswith(".conf")]
    if path is BootPath.GRUB_DEBIAN or (path is BootPath.GRUB_BLS and not entries):
        # Without BootLoaderSpec entries (Debian, RHEL 7) the kernel lines are in grub.cfg itself.
        for cfg in GRUB_CFG_FILES:
            lines = _linux_lines(root, cfg)
            if lines:
                number, line = lines[0]
                config.files_read.append(cfg)
                # The first menu entry is GRUB_DEFAULT=0's; its arguments follow `linux` and the kernel path.
                config.next_boot = CommandLine(
                    f"{cfg} line {number} (first menu entry)", _words(cfg, number, " ".join(line.split()[2:]))
                )
                break
    elif path is BootPath.GRUB_BLS:
        env_path, grubenv = _grubenv(root)
        if env_path:
            config.files_read.append(env_path)
        if entries:
            saved = grubenv.get("saved_entry", ("", 0, ""))[2] or None
            default = _default_entry(entries, saved)
            config.files_read.append(default)
            config.next_boot = _bls_entry(root, default, grubenv)
        if root.exists(KERNEL_CMDLINE):
            config.sources.append(_kernel_cmdline(root))
    else:
        directory = _systemd_boot_dir(root) or "/boot/efi/loader"
        entries = [
            f"{directory}/entries/{n}" for n in root.listdir(f"{directory}/entries") if n.endswith(".conf")
        ]
        default_pattern = next(
            (
                v
                for _, k, v in _key_values(root.read_text(f"{directory}/loader.conf") or "")
                if k == "default"
            ),
            None,
        )
        if entries:
            chosen = [
                e
                for e in entries
                if default_pattern and fnmatch.fnmatch(e.rsplit("/", 1)[-1], default_pattern)
            ]
            default = sorted(chosen or entries, key=_version_key)[-1]
            config.files_read.append(default)
            config.next_boot = _bls_entry(root, default, {})
        if root.exists(KERNEL_CMDLINE):
            config.sources.append(_kernel_cmdline(root))
    return config


def _kernel_cmdline(root: HostRoot) -> CommandLine:
    words: list[Word] = []
    for number, line in enumerate((root.read_text(KERNEL_CMDLINE) or "").splitlines(), start=1):
        if not line.lstrip().startswith("#"):
            words += _words(KERNEL_CMDLINE, number, line)
    return CommandLine(KERNEL_CMDLINE, tuple(words))
