from __future__ import annotations


def main() -> int:
    raise SystemExit("hostdev-lab: not built yet")
