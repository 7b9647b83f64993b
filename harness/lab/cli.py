"""``hostdev-lab``: boot, use and stop the built-in nested host.

hostdev-lab up SPEC [--name NAME] [--ssh]  boot detached; prints the libvirt URI (and ssh access)
hostdev-lab status [NAME] [--json]         list labs (or one lab's lab.json)
hostdev-lab exec [--name NAME] -- CMD...   run CMD in L1, stream its output, exit with its code
hostdev-lab run SPEC [--name NAME] [--ssh] -- CMD  up, exec, down in one go
hostdev-lab console [NAME] [-n LINES]      tail of L1's serial console
hostdev-lab down [NAME | --all]            stop a lab (--all: every lab of this user and checkout)

Exit codes: the command's own for exec/run; 0 done; 2 a bad spec, argument or lab error;
3 internal error; 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from harness import __version__
from harness.command import EXIT_INTERRUPTED, OneLineParser, run_command
from harness.errors import HarnessInputError
from harness.lab.lab import Lab, list_labs, start_lab
from harness.lab.paths import STATE_MARKER, removable_state_dir
from harness.lab.spec import load_spec
from harness.lab.state import LabError

PROG = "hostdev-lab"
_SSH_HELP = "an sshd in L1 on a loopback port of this machine (as the spec's [access] ssh = true)"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="The built-in nested host for hostdev-harness.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="boot a lab and leave it running")
    up.add_argument("spec", help="lab spec (TOML), e.g. fixtures/labs/default.toml")
    up.add_argument("--name", help="lab name (default: the spec's name); two labs need two names")
    up.add_argument("--ssh", action="store_true", help=_SSH_HELP)

    run = commands.add_parser("run", help="boot a lab, run a command in it, stop it")
    run.add_argument("spec")
    run.add_argument("--name", help="lab name (default: <spec name>-run<pid>)")
    run.add_argument("--ssh", action="store_true", help=_SSH_HELP)
    run.add_argument("cmd", nargs="*", help="-- command to run inside the lab")

    exec_ = commands.add_parser("exec", help="run a command in a running lab")
    exec_.add_argument("--name", help="lab name (default: the only running lab)")
    exec_.add_argument("--cwd", help="working directory in L1 (default: the current directory)")
    exec_.add_argument("cmd", nargs="*", help="-- command to run inside the lab")

    status = commands.add_parser("status", help="show running labs")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true", help="print lab.json")

    console = commands.add_parser("console", help="print the tail of a lab's serial console")
    console.add_argument("name", nargs="?")
    console.add_argument("-n", "--lines", type=int, default=40)

    down = commands.add_parser("down", help="stop a lab")
    down.add_argument("name", nargs="?")
    down.add_argument("--all", action="store_true", help="every lab this user started from this checkout")
    return parser


def _command(words: Sequence[str]) -> list[str]:
    command = list(words)
    if not command:
        raise HarnessInputError("no command given; put it after --, e.g. hostdev-lab exec -- lspci")
    return command


def _pick(name: str | None) -> Lab:
    if name:
        return Lab.load(name)
    running = [lab for lab in list_labs() if lab.is_running()]
    if len(running) == 1:
        return running[0]
    if not running:
        raise LabError("no lab is running; start one with hostdev-lab up SPEC")
    raise LabError(f"several labs are running ({', '.join(lab.name for lab in running)}): pass --name")


def _refuse_foreign_state(lab: Lab) -> None:
    # Never stop or remove what hostdev-lab did not create (a dir without its marker, a link out).
    if not removable_state_dir(lab.state_dir):
        raise HarnessInputError(
            f"{lab.state_dir} was not created by hostdev-lab (no {STATE_MARKER}); nothing stopped or removed"
        )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP take the same clean path as Ctrl-C: the lab is stopped in a finally block.
    raise KeyboardInterrupt(f"signal {signum}")


def _run(args: argparse.Namespace) -> int:
    command = _command(args.cmd)
    spec = load_spec(args.spec)  # a bad spec fails here, before anything starts
    # A run's lab is ephemeral: a name of its own lets several runs (and an `up` lab) coexist.
    lab = start_lab(spec, name=args.name or f"{spec.name}-run{os.getpid()}", ssh=args.ssh)
    try:
        print(
            f"hostdev-lab: {lab.name} ready ({lab.libvirt_uri}); running {' '.join(command)}", file=sys.stderr
        )
        return lab.stream(command, cwd=os.getcwd())
    finally:
        lab.stop()


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, lambda: _main(list(sys.argv[1:] if argv is None else argv)))


def _main(words: list[str]) -> int:
    # Everything after the first "--" is the command for L1, untouched by option parsing.
    after: list[str] = []
    if "--" in words:
        split = words.index("--")
        words, after = words[:split], words[split + 1 :]
    args = _parser().parse_args(words)
    if hasattr(args, "cmd"):
        args.cmd = [*args.cmd, *after]
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        stopped = "; lab stopped" if args.command in ("run", "up") else ""
        print(f"{PROG}: interrupted{stopped}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        lab = start_lab(load_spec(args.spec), name=args.name, detach=True, ssh=args.ssh)
        print(f"{lab.name} ready: {lab.libvirt_uri}  (state: {lab.state_dir})")
        print(f"HARNESS_ALLOW={','.join(lab.allowed_bdfs)}")
        if lab.ssh is not None:
            print(f"ssh: {lab.ssh.to_json()['command']}")
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "exec":
        return _pick(args.name).stream(_command(args.cmd), cwd=args.cwd or os.getcwd())
    if args.command == "status":
        labs = [Lab.load(args.name)] if args.name else list_labs()
        if args.json:
            print(json.dumps([lab.to_json() for lab in labs], indent=2))
            return 0
        if not labs:
            print("no labs")
        for lab in labs:
            state = lab.status if lab.is_running() else f"{lab.status}, not running"
            print(f"{lab.name}: {state}, pid {lab.pid}, {lab.libvirt_uri}, accel {lab.accel}")
            print(f"  L1 runs on {lab.l1_qemu_text}")
            if lab.ssh is not None:
                print(f"  ssh: port {lab.ssh.port}, user {lab.ssh.user}, key {lab.ssh.key}")
                print(f"       {lab.ssh.to_json()['command']}")
        return 0
    if args.command == "console":
        print(_pick(args.name).console_tail(args.lines))
        return 0
    if args.command == "down":
        if args.all and args.name:
            raise HarnessInputError("give a lab name or --all, not both")
        labs = list_labs() if args.all else [_pick(args.name)]
        for lab in labs:
            _refuse_foreign_state(lab)
            lab.stop()
            print(f"{lab.name}: stopped")
        return 0
    raise HarnessInputError(f"unknown command {args.command!r} (see {PROG} --help)")
