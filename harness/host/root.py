"""File access below a host root: ``/`` for the live host, a directory for a snapshot."""

from __future__ import annotations

import os
from pathlib import Path


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

    def read_text(self, host_path: str) -> str | None:
        try:
            return self.resolve(host_path).read_text(errors="replace")
        except OSError:
            return None

    def read_bytes(self, host_path: str) -> bytes | None:
        try:
            return self.resolve(host_path).read_bytes()
        except OSError:
            return None

    def read_stripped(self, host_path: str) -> str | None:
        text = self.read_text(host_path)
        return None if text is None else text.strip()

    def exists(self, host_path: str) -> bool:
        return os.path.lexists(self.resolve(host_path))

    def listdir(self, host_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.resolve(host_path)))
        except OSError:
            return []

    def link_name(self, host_path: str) -> str | None:
        """The last component of a symlink's target (``driver`` -> ``vfio-pci``), or None."""
        try:
            return os.path.basename(os.readlink(self.resolve(host_path)))
        except OSError:
            return None

    def realpath(self, host_path: str) -> str:
        """The host path a symlink chain below the root ends at."""
        real = Path(os.path.realpath(self.resolve(host_path)))
        try:
            return self.host_path(real)
        except ValueError:
            return str(real)
