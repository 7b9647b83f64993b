"""What both command lines share: one line per error, the documented exit codes, never a traceback.

Exit codes (README, ``harness/errors.py``): 0 ready or done, 1 not ready, 2 usage or input error,
3 internal error, 130 interrupted (Ctrl-C), 141 the reader of our output went away (``| head``).
``HARNESS_DEBUG=1`` prints the traceback of an internal error for a bug report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn

from harness.errors import EXIT_INTERNAL, EXIT_USAGE, HarnessError, HarnessInputError

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE
DEBUG_ENV = "HARNESS_DEBUG"


class StoreOnce(argparse.Action):
    """An option that takes one non-empty value, given once: ``--uri ''`` or two ``--snapshot``s are refused
    instead of silently meaning the default or the last one."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        seen: set[str] = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in seen:
            parser.error(f"{option_string} was given twice: give it once")
        if not str(values).strip():
            parser.error(f"{option_string} is empty: give a value or leave the option out")
        seen.add(self.dest)
        setattr(namespace, self.dest, values)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (our exit code 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        raise HarnessInputError(f"{message} (see {self.prog} --help)")


def _say(prog: str, message: str) -> None:
    # The first line names what is wrong and what to do; details after it (a console tail) only on demand.
    first, _, details = message.strip().partition("\n")
    one_line = " ".join(first.split())
    if details and os.environ.get(DEBUG_ENV):
        one_line += "\n" + details
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: {one_line}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM/SIGHUP take Ctrl-C's path: finally blocks stop children (the private libvirtd, labs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise TerminatedBySignal(signum)


def _terminate_like_ctrl_c() -> None:
    # Only where nobody chose a handler yet, and only in the main thread (signal.signal's rule).
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise_terminated)


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body and turn whatever ends it into one stderr line and an exit code."""
    _terminate_like_ctrl_c()
    if sys.stdout is None:  # started with stdout closed (``>&-``): nothing could be written, so run nothing
        _say(prog, "standard output is closed: run it with stdout open (a terminal, a file or a pipe)")
        return EXIT_USAGE
    try:
        code = body()
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except HarnessError as exc:
        _say(prog, str(exc))
        return exc.exit_code
    except TerminatedBySignal as exc:
        _say(prog, f"interrupted by {signal.Signals(exc.signum).name}")
        return 128 + exc.signum
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # A file or device the user named (or the environment) refused: not a bug in the harness.
        where = f": {exc.filename}" if exc.filename else ""
        _say(prog, f"{exc.strerror or exc}{where}; check the path and its permissions")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        _say(
            prog,
            f"internal error: {type(exc).__name__}: {exc} (a bug in hostdev-harness; rerun with "
            f"{DEBUG_ENV}=1 for the traceback and report it)",
        )
        return EXIT_INTERNAL
