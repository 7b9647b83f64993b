"""A small QMP client: one command at a time on a QEMU's monitor socket (labgrid's ``util/qmp.py`` is the model).

The lab uses it on L1's QEMU, e.g. ``device_add`` / ``device_del`` to simulate physical hotplug.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessEnvironmentError

DEFAULT_TIMEOUT = 30.0


class QmpError(HarnessEnvironmentError):
    """QEMU answered a QMP command with an error; the message names the command and QEMU's error."""


def _answer(stream: io.BufferedIOBase) -> dict[str, Any]:
    """The next reply on the monitor, skipping asynchronous events."""
    while True:
        reply: dict[str, Any] = json.loads(stream.readline())
        if "event" not in reply:
            return reply


def execute(
    socket_path: Path,
    command: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Connect, negotiate capabilities, run ``command`` and return its ``return`` value (QmpError on an error)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        stream = sock.makefile("rwb")
        json.loads(stream.readline())  # greeting
        reply: dict[str, Any] = {}
        for message in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments or {}}):
            stream.write(json.dumps(message).encode() + b"\n")
            stream.flush()
            reply = _answer(stream)
            if "error" in reply:
                raise QmpError(f"QMP {command} failed: {reply['error']}")
        return reply.get("return")
