"""File access below a host root: ``/`` for the live host, a directory for a snapshot.

A snapshot is untrusted input (users attach them to bug reports), so below a snapshot root every read
stays inside it: a path whose links resolve outside the root is refused, only regular files are read
(a FIFO, device node or socket would hang or touch this machine), opened without blocking and bounded
in size. A file that is missing is not an error (an older snapshot did not capture it): the readers
get ``None`` and say "not captured". Anything else wrong raises ``HostFileError`` naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from harness.errors import HostFileError

# The largest file a snapshot may hold: sysfs attributes are a page, the largest captured files (dmesg,
# modules.dep, grub.cfg) a few MiB; anything above is not what capture wrote.
MAX_SNAPSHOT_FILE_BYTES = 16 * 1024 * 1024
RECAPTURE = "capture the snapshot again with: hostdev-harness snapshot DIR"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class NotARegularFileError(OSError):
    """A file the harness was given to read that is not a regular file of a sane size, or unreadable."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def read_regular_file(path: str | Path, limit: int = MAX_SNAPSHOT_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    For files from elsewhere (snapshots, reports, journals): opened without blocking, so a FIFO cannot
    hang the harness, and checked with fstat before reading, so a device or socket is never read.
    Raises ``FileNotFoundError`` when missing (callers decide what absence means), else
    ``NotARegularFileError`` saying what is wrong.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a tty never becomes ours.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO's peer
            raise NotARegularFileError("not a regular file; refused") from None
        raise NotARegularFileError(f"unreadable ({exc.strerror})") from None
    info = os.fstat(fd)  # before fdopen, which refuses a directory with an error of its own
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotARegularFileError(f"is {_kind(info.st_mode)}, expected a regular file; refused")
    with os.fdopen(fd, "rb") as file:
        if info.st_size > limit:
            raise NotARegularFileError(f"{info.st_size} bytes, above the {limit} bytes allowed here")
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise NotARegularFileError(f"unreadable ({exc.strerror})") from None
    if len(data) > limit:  # grew while read
        raise NotARegularFileError(f"more than the {limit} bytes allowed here")
    return data


class HostRoot:
    """Reads files of a host below ``path``; every reader of the host model goes through one of these.

    Absolute host paths (``/proc/cmdline``) are mapped below the root, so the same reader serves the
    live host and a snapshot captured with ``hostdev-harness snapshot``.
    """

    def __init__(self, path: str | Path = "/") -> None:
        self.path = Path(path).resolve()

    @property
    def is_live(self) -> bool:
        return self.path == Path("/")

    def __repr__(self) -> str:
        return f"HostRoot({str(self.path)!r})"

    def resolve(self, host_path: str) -> Path:
        return self.path / host_path.lstrip("/")

    def host_path(self, path: Path) -> str:
        """The host's own spelling of a path below this root (``/sys/...``)."""
        return "/" + str(Path(path).relative_to(self.path)) if path != self.path else "/"

    def error(self, host_path: str, problem: str) -> HostFileError:
        """The error a reader raises for a file of this host that is not what it expects."""
        if self.is_live:
            return HostFileError("this host", host_path, problem, "the harness cannot read this host")
        relative = host_path.lstrip("/")
        return HostFileError(f"snapshot {self.path}", relative, problem, RECAPTURE)

    def _inside(self, host_path: str) -> Path:
        """The real path of ``host_path``; below a snapshot, refused when its links lead outside."""
        path = self.resolve(host_path)
        if self.is_live:
            return path
        real = Path(os.path.realpath(path))
        if real != self.path and not real.is_relative_to(self.path):
            raise self.error(host_path, f"a link that leads outside the snapshot (to {real}); refused")
        return real

    def _read(self, host_path: str) -> bytes | None:
        if self.is_live:
            try:
                return self.resolve(host_path).read_bytes()
            except OSError:
                return None
        try:
            return read_regular_file(self._inside(host_path))
        except FileNotFoundError:
            return None
        except NotARegularFileError as exc:
            raise self.error(host_path, exc.problem) from None

    def read_text(self, host_path: str) -> str | None:
        data = self._read(host_path)
        return None if data is None else data.decode(errors="replace")

    def read_bytes(self, host_path: str) -> bytes | None:
        return self._read(host_path)

    def read_stripped(self, host_path: str) -> str | None:
        text = self.read_text(host_path)
        return None if text is None else text.strip()

    def read_number(self, host_path: str, *, base: int = 10, what: str = "a decimal number") -> int | None:
        """A file holding one number (a sysfs attribute); None when missing, ``HostFileError`` when not a number."""
        text = self.read_stripped(host_path)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            raise self.error(host_path, f"holds {text[:40]!r}, expected {what}") from None

    def read_hex(self, host_path: str) -> int | None:
        return self.read_number(host_path, base=16, what="a hexadecimal number such as 0x8086")

    def read_json(self, host_path: str, expected: str) -> dict[str, object] | None:
        """A JSON object the harness wrote into a snapshot; None when missing."""
        import json

        text = self.read_text(host_path)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise self.error(host_path, f"not JSON ({exc}), expected {expected}") from None
        if not isinstance(data, dict):
            raise self.error(host_path, f"holds a JSON {type(data).__name__}, expected {expected}")
        return data

    def exists(self, host_path: str) -> bool:
        return os.path.lexists(self.resolve(host_path))

    def listdir(self, host_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._inside(host_path)))
        except OSError:
            return []

    def link_name(self, host_path: str) -> str | None:
        """The last component of a symlink's target (``driver`` -> ``vfio-pci``), or None."""
        path = self.resolve(host_path)
        try:
            target = os.readlink(path)
        except OSError:
            if self.is_live or not os.path.lexists(path):
                return None
            mode = os.lstat(path).st_mode
            kind = "a regular file" if stat.S_ISREG(mode) else _kind(mode)
            raise self.error(host_path, f"is {kind}, expected a symbolic link") from None
        self._inside(host_path)  # a link out of a snapshot is refused, even when only its name is used
        return os.path.basename(target)

    def realpath(self, host_path: str) -> str:
        """The host path a symlink chain below the root ends at."""
        real = Path(os.path.realpath(self.resolve(host_path))) if self.is_live else self._inside(host_path)
        try:
            return self.host_path(real)
        except ValueError:
            return str(real)
