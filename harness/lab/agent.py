"""L0's side of the exec channel: run a command in L1 through the agent's forwarded loopback port."""

from __future__ import annotations

import io
import json
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from harness.errors import HarnessEnvironmentError
from harness.lab.guest_agent import ERROR, EXIT, HEADER, STDERR, STDOUT


class AgentError(HarnessEnvironmentError):
    """The agent could not run the command (not a non-zero exit: that is a normal result)."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AgentError("the lab's agent closed the connection (did the nested host stop?)")
        data += chunk
    return bytes(data)


def _connect(port: int, timeout: float | None) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def ping(port: int, timeout: float = 2.0) -> bool:
    """True once the agent answers (slirp accepts the TCP connection before the guest listens)."""
    try:
        with _connect(port, timeout) as sock:
            sock.sendall(b'{"op": "ping"}\n')
            kind, length = HEADER.unpack(_recv_exact(sock, HEADER.size))
            _recv_exact(sock, length)
            return bool(kind == EXIT)
    except (OSError, AgentError):
        return False


def run(
    port: int,
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``argv`` in L1, stream its output to ``stdout``/``stderr`` (L0's by default), return its exit code.

    ``timeout`` bounds the wait for each chunk of output; when it expires the connection is dropped and
    the agent kills the command's process group.
    """
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    request = {"op": "exec", "argv": list(argv), "cwd": cwd, "env": dict(env or {})}
    try:
        sock = _connect(port, 10.0)
    except OSError as exc:
        raise AgentError(f"cannot reach the lab's agent on 127.0.0.1:{port}: {exc}") from exc
    with sock:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            try:
                kind, length = HEADER.unpack(_recv_exact(sock, HEADER.size))
                payload = _recv_exact(sock, length)
            except TimeoutError:
                raise AgentError(f"{list(argv)!r} printed nothing for {timeout}s; stopped it") from None
            if kind == STDOUT:
                out.write(payload)
                out.flush()
            elif kind == STDERR:
                err.write(payload)
                err.flush()
            elif kind == EXIT:
                return int(json.loads(payload)["rc"])
            elif kind == ERROR:
                raise AgentError(json.loads(payload)["error"])
            else:
                raise AgentError(f"unexpected frame kind {kind} from the agent")


def capture(
    port: int,
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, str]:
    """Run ``argv`` in L1 and return (exit code, stdout+stderr as text)."""
    sink = io.BytesIO()
    rc = run(port, argv, cwd=cwd, env=env, stdout=sink, stderr=sink, timeout=timeout)
    return rc, sink.getvalue().decode(errors="replace")
