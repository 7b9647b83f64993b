"""What the benchmarks that run inside the nested host share: a lab (one already up, or one booted for the
run), and a script run in L1 whose last output line is its JSON result."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.lab.lab import Lab, booted_lab

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def chosen_lab(name: str | None, boot_as: str) -> Iterator[Lab]:
    """The lab ``name`` (started by ``hostdev-lab up``), else the default lab booted as ``boot_as``."""
    if name:
        yield Lab.load(name)
        return
    with booted_lab(REPO / "fixtures" / "labs" / "default.toml", name=boot_as) as lab:
        yield lab


def run_inside(lab: Lab, label: str, script: str, *args: object) -> dict[str, Any]:
    """Run ``script`` with this Python in L1 (repo as cwd, over the shared root); its last line, as JSON."""
    path = REPO / "reports" / f".{label}_inside.py"
    path.write_text(script)
    try:
        command = " ".join([sys.executable, str(path), *map(str, args)])
        rc, output = lab.exec(command, cwd=str(REPO), timeout=3600)
    finally:
        path.unlink()
    if rc != 0:
        raise SystemExit(f"the benchmark failed inside L1 (exit {rc}):\n{output[-3000:]}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result
