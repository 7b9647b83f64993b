"""Opening libvirt connections, quietly, with errors that say what to do."""

from __future__ import annotations

import libvirt

from harness.errors import HarnessEnvironmentError

DEFAULT_URI = "qemu:///system"


def ignore_libvirt_error(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; the harness reports them itself."""


libvirt.registerErrorHandler(ignore_libvirt_error, None)


class LibvirtUnavailableError(HarnessEnvironmentError):
    """No libvirt daemon answers at a URI (the message names it and what libvirt said)."""


def open_connection(uri: str, *, read_only: bool = False) -> libvirt.virConnect:
    try:
        return libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailableError(f"cannot connect to {uri}: {exc.get_error_message()}") from exc


def answers(uri: str) -> bool:
    try:
        open_connection(uri).close()
    except LibvirtUnavailableError:
        return False
    return True


def is_local_system_uri(uri: str) -> bool:
    return uri.split("?", 1)[0] in ("qemu:///system", "qemu+unix:///system")


def version_text(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1_000)
    return f"{major}.{minor}.{micro}"
