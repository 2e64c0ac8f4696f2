"""Talking to a running kernel: ``batos ping``, ``send``, ``keys`` and ``console``.

These commands never open the image: ping, send and the console reach the
kernel over the wire as any client would, and keys makes the CURVE pairs
they authenticate with. The client and zmq are imported lazily, so that
``batos --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from batos.cli.common import Commands, add_command, add_group, client, client_args, json_default, print_json
from batos.core.errors import BatosError


def register(commands: Commands) -> None:
    p = add_command(commands, "ping", cmd_ping, "print the kernel's status; exit 0 when it answers")
    client_args(p, 5.0)
    p.add_argument("--json", action="store_true", help="print the status as JSON")

    p = add_command(commands, "send", cmd_send, "send one message and print the reply")
    client_args(p, 600.0)
    p.add_argument("--json", action="store_true", help="print the final reply as one JSON document (progress on stderr)")
    p.add_argument("--intent", help="what the message should do, in words (used to learn an unknown selector)")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="a keyword argument (repeatable)")
    p.add_argument("target", help="a root name (genesis, brick, ...) or an OID (0x2a)")
    p.add_argument("selector", help="the message name")
    p.add_argument("args", nargs="*", help="arguments: JSON literals when they parse, else strings")

    actions = add_group(commands, "keys", "CURVE key pairs for a kernel exposed beyond loopback")
    p = add_command(actions, "generate", cmd_keys_generate, "write NAME.key (public) and NAME.key_secret for each NAME")
    p.add_argument("--dir", default="keys", help="where to write the key files (default ./keys)")
    p.add_argument("names", nargs="*", default=["server", "client"], help="key pair names (default: server client)")

    p = add_command(commands, "console", cmd_console, "the Architect's interactive console")
    client_args(p, 600.0)
    p.add_argument("--history", default=None, help="history file (default ~/.batos_history)")
    p.add_argument("--no-model", action="store_true", help="translate natural language with the rule parser only")


def cmd_ping(args: argparse.Namespace) -> int:
    from clients.client import make_ping

    # Keep retrying until --timeout: a kernel that is just starting still counts.
    with client(args, answer_timeout=min(1.0, args.timeout), retries=10**6) as kernel:
        reply = kernel.request(make_ping(), timeout=args.timeout)
    if args.json:
        print_json(reply.status)
        return 0
    status = reply.status
    print(f"kernel up: pid {status['pid']}, batos {status['version']}, uptime {status['uptime_s']:.1f}s")
    print(f"image:    {status['image']}")
    print(f"messages: {status['in_flight']} in flight, {status['handled']} handled, {status.get('queued', 0)} waiting for a worker"
          f"{' (oldest %.1fs)' % status['oldest_queued_s'] if status.get('oldest_queued_s') else ''}; cycles running: {status['cycles_running']}")
    sandbox = status.get("sandbox")
    if sandbox:
        print(f"methods:  {protection_line(sandbox['protections'])}; workers {sandbox['busy']}/{sandbox['workers']} busy, "
              f"{sandbox['calls']} calls, {sandbox['faults']} stopped by a limit or the sandbox")
    warmth = f"; {status['warmth']}" if status.get("warmth") else ""  # absent without a model
    print(f"models:   {', '.join(status['models_loaded']) or 'none loaded'}{warmth}")
    loops = status.get("loops")
    if loops:
        print(f"loops:    heartbeat {'on' if loops['heartbeat'] else 'off'}; goals {loops['goals_pending']} pending, {loops['goals_running']} running; "
              f"{loops['proposals_pending']} codex proposal(s) await the Architect")
    return 0


def protection_line(p: dict[str, Any]) -> str:
    """What contains stored methods, as the kernel reported it."""
    if p.get("refused"):
        return f"REFUSED TO RUN: {p['refused']}"
    if p.get("unsafe"):
        return "UNSAFE: separate rlimited processes WITHOUT seccomp/Landlock (--unsafe-unsandboxed-methods)"
    return f"sandboxed (seccomp-bpf, Landlock ABI {p['landlock_abi']}, no_new_privs, rlimits)"


def cmd_send(args: argparse.Namespace) -> int:
    from clients.client import ProgressPrinter, make_send, parse_word

    kwargs: dict[str, Any] = {}
    for item in args.kw:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise BatosError(f"--kw takes KEY=VALUE with KEY an identifier, got {item!r}")
        kwargs[key] = parse_word(value)
    message = make_send(args.target, args.selector, [parse_word(a) for a in args.args], kwargs, args.intent)
    # With --json stdout carries exactly one document, so progress goes to stderr.
    progress_out = sys.stderr if args.json else sys.stdout

    def write(text: str) -> None:
        progress_out.write(text)
        progress_out.flush()

    show = ProgressPrinter(write)

    with client(args) as kernel:
        reply = kernel.request(message, timeout=args.timeout, on_reply=show)
    if args.json:
        print(json.dumps(reply.model_dump(), default=json_default))
    elif reply.kind == "result":
        value = reply.value
        if isinstance(value, str):
            print(value)
        else:
            print_json(value, default=json_default)
    if reply.kind == "error":
        if not args.json:
            print(f"batos: error: [{reply.code}] {reply.message}", file=sys.stderr)
        return 1
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    import zmq.auth

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        public, secret = zmq.auth.create_certificates(str(directory), name)
        print(f"{name}: public {public}  secret {secret}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from clients.console import run_console

    return run_console(args)
