"""The console scripts' entry points: a Ctrl-C while the harness is still being imported (seconds on a slow
host: libvirt, lxml) ends in one line and exit 130, as it does once a command runs, not in a traceback."""

from __future__ import annotations

import importlib
import sys

EXIT_INTERRUPTED = 130  # harness.command's, not imported from there: importing it is what may be interrupted


def run_entry(module: str, prog: str) -> int:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(main())


def hostdev_harness() -> int:
    return run_entry("harness.cli", "hostdev-harness")


def hostdev_lab() -> int:
    return run_entry("harness.lab.cli", "hostdev-lab")
