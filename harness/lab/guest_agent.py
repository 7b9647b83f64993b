"""The exec agent inside L1 (stdlib only; started by the lab's init with ``python -I -S``).

Protocol over one TCP connection per command: the client sends one JSON line
``{"op": "exec", "argv": [...], "cwd": "...", "env": {...}}`` (or ``{"op": "ping"}``); the agent answers
with frames ``kind:u8 length:u32 payload``: 1 stdout bytes, 2 stderr bytes, 3 exit ``{"rc": N}``,
4 error ``{"error": "..."}``. If the client goes away, the command's whole process group is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from typing import IO

STDOUT, STDERR, EXIT, ERROR = 1, 2, 3, 4
HEADER = struct.Struct("!BI")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


class ExecHandler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.send_lock = threading.Lock()

    def send(self, kind: int, payload: bytes) -> None:
        with self.send_lock:
            self.request.sendall(HEADER.pack(kind, len(payload)) + payload)

    def handle(self) -> None:
        try:
            request = json.loads(self.rfile.readline())
        except ValueError as exc:
            self.send(ERROR, json.dumps({"error": f"bad request: {exc}"}).encode())
            return
        if request.get("op") == "ping":
            self.send(EXIT, json.dumps({"rc": 0}).encode())
            return
        env = {**BASE_ENV, **request.get("env", {})}
        try:
            process = subprocess.Popen(
                request["argv"],
                cwd=request.get("cwd") or "/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (OSError, KeyError, TypeError) as exc:
            self.send(ERROR, json.dumps({"error": f"cannot start {request.get('argv')!r}: {exc}"}).encode())
            return
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            threading.Thread(target=self.pump, args=(process.stdout, STDOUT), daemon=True),
            threading.Thread(target=self.pump, args=(process.stderr, STDERR), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        threading.Thread(target=self.watch_client, args=(process,), daemon=True).start()
        rc = process.wait()
        for pump in pumps:
            pump.join()
        with contextlib.suppress(OSError):
            self.send(EXIT, json.dumps({"rc": rc}).encode())

    def pump(self, stream: IO[bytes], kind: int) -> None:
        try:
            while chunk := os.read(stream.fileno(), 65536):
                self.send(kind, chunk)
        except OSError:
            pass  # the client went away; watch_client ends the command

    def watch_client(self, process: subprocess.Popen[bytes]) -> None:
        # The client sends nothing after its request: any read that returns means it hung up.
        with contextlib.suppress(OSError):
            self.request.recv(1)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    with Server((host, port), ExecHandler) as server:
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print(f"hostdev-lab agent: listening on {host}:{port}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
