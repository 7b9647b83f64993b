"""Repository-level pytest configuration: what is never collected as tests."""

from __future__ import annotations

# Host snapshots mirror /sys and /proc, the lab cache holds kernels, reports are output.
collect_ignore = ["fixtures", "reports", "benchmarks", ".cache"]
