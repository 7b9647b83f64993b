"""One error hierarchy: every error the harness raises on purpose derives from ``HarnessError``.

A CLI catches ``HarnessError`` once and prints its message as one line with the class's exit code;
anything else that escapes is a bug in the harness (exit code 3, ``InternalError``). The exit codes
are documented in the README:

- 0: the host is ready (or the command did what it was asked);
- 1: the host is not ready (a check FAILed, or a WARN under ``--strict``);
- 2: usage or input error (bad argument, file, address, spec, journal): nothing was changed;
- 3: internal error (a bug, or the environment broke under the harness).
"""

from __future__ import annotations

from typing import ClassVar

EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INCOMPLETE = 4  # validate: every test that ran passed, but not every preparation check ran


class HarnessError(Exception):
    """Base of the harness's own errors; the message is one line a person can act on."""

    exit_code: ClassVar[int] = EXIT_USAGE


class HarnessInputError(HarnessError, ValueError):
    """A bad argument, file, address, spec or journal: nothing was changed."""


class HostChangeError(HarnessError, RuntimeError):
    """A change to the host did not take effect, or could not be undone, as expected."""

    exit_code: ClassVar[int] = EXIT_INTERNAL


class HostStateError(HostChangeError):
    """The host is not in the state a change needs, as its readers found it (a driver link, a netdev, a VF,
    a libvirt object); raised by the layers below the changes, with the exit code of a change that failed."""


class HarnessEnvironmentError(HarnessError, RuntimeError):
    """Something the harness needs is missing or broken on this machine (libvirtd, QEMU, a kernel)."""


class HostFileError(HarnessInputError):
    """A file of the host under test (a snapshot's, usually) that is unreadable or not what its reader expects.

    Raised by the readers (``HostRoot`` and the parsers above it) with the file's host path, so a corrupt
    or hostile snapshot ends in one line naming the file, never a traceback, a hang or a read outside it.
    """

    def __init__(self, where: str, path: str, problem: str, hint: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{where}: {path}: {problem}; {hint}")
