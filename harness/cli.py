from __future__ import annotations


def main() -> int:
    raise SystemExit("hostdev-harness: not built yet")
