"""One user per device: an advisory lock per PCI address, shared by xdist workers and separate runs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_LOCK_DIR = Path("/run/hostdev-harness/locks")


class DeviceBusyError(RuntimeError):
    pass


@contextmanager
def device_lock(address: str, lock_dir: Path = DEFAULT_LOCK_DIR, *, wait: bool = True) -> Iterator[None]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{address}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DeviceBusyError(f"{address} is in use by another worker or run") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
