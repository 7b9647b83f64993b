"""Say what a long step is doing, on stderr: a live line on a terminal, plain lines in CI logs.

On a TTY the step's line is redrawn with the elapsed time (and a byte count, for downloads) until it
ends; elsewhere the step prints one line when it starts and one when it ends, so a CI log shows both
and how long the step took. ``HARNESS_PROGRESS=plain|live|off`` overrides the choice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

PROGRESS_ENV = "HARNESS_PROGRESS"
PREFIX = "hostdev-harness"


def _mode(stream: TextIO) -> str:
    chosen = os.environ.get(PROGRESS_ENV, "")
    if chosen in ("plain", "live", "off"):
        return chosen
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return "live" if is_tty and os.environ.get("TERM") != "dumb" else "plain"


def human_size(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


class Progress:
    """One step: ``with Progress("starting a private libvirtd ...") as step: ...; step.done("ready")``."""

    def __init__(
        self,
        what: str,
        *,
        stream: TextIO | None = None,
        total_bytes: int | None = None,
        bytes_done: Callable[[], int] | None = None,
        prefix: str = PREFIX,
    ) -> None:
        self.what = what
        self.prefix = prefix
        self._measure = bytes_done
        self.stream = stream or sys.stderr
        self.mode = _mode(self.stream)
        self.total_bytes = total_bytes
        self.result: str | None = None
        self._started = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.mode == "plain":
            self._print(f"{self.prefix}: {self.what}{self._size_text()} ...")
        elif self.mode == "live":
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def note(self, stage: str) -> None:
        """A stage reached within the step, as a line of its own (the live line is redrawn below it)."""
        if self.mode == "off":
            return
        elapsed = time.monotonic() - self._started
        if self.mode == "live":
            with contextlib.suppress(OSError, ValueError):
                self.stream.write("\r\033[K")
        self._print(f"{self.prefix}: {self.what}: {stage} ({elapsed:.1f} s)")

    def done(self, result: str) -> None:
        """What the step ended with, said on its last line."""
        self.result = result

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.mode == "off":
            return
        elapsed = time.monotonic() - self._started
        if kind is None:
            ending = f"done in {elapsed:.1f} s" + (f": {self.result}" if self.result else "")
        else:
            ending = f"stopped after {elapsed:.1f} s"
        if self.mode == "live":
            self.stream.write("\r\033[K")
        self._print(f"{self.prefix}: {self.what}: {ending}")

    def _measured(self) -> int:
        if self._measure is None:
            return 0
        try:
            return self._measure()
        except OSError:
            return 0

    def _size_text(self) -> str:
        return f" ({human_size(self.total_bytes)})" if self.total_bytes else ""

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self._started
            done = self._measured()
            count = f", {human_size(done)}" if done else ""
            line = f"{self.prefix}: {self.what}{self._size_text()} ... {elapsed:.0f} s{count}"
            try:
                self.stream.write(f"\r\033[K{line}")
                self.stream.flush()
            except (OSError, ValueError):
                return  # the terminal went away; the step itself goes on

    def _print(self, line: str) -> None:
        # Progress is a courtesy: a closed stderr must not break the step.
        with contextlib.suppress(OSError, ValueError):
            print(line, file=self.stream, flush=True)
