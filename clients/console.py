"""The Architect's console: a thin interactive shell over the kernel client.

The line parser and the command handling are plain functions of text, so the
tests drive them without a terminal; the prompt_toolkit session (line
editing, persistent history, a heartbeat in the bottom toolbar) is only used
when stdin is a terminal. Piped input works line by line, which makes the
console scriptable.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import sys
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from batos.core.errors import BatosError
from clients.client import KernelClient, NoAnswer, ProgressPrinter, connect, make_inspect, make_ping, make_send, parse_word
from clients.translate import MissionBrief, RuleTranslator, Translator

TARGET = r"(?:[A-Za-z_]\w*|0x[0-9A-Fa-f]+)"
_DOTTED = re.compile(rf"^({TARGET})\.([A-Za-z_]\w*)\s*(\(.*)?$", re.DOTALL)

HELP = """\
Send a message:   genesis factorial 5        genesis.factorial(5)      brick system_prompt
                  keyword arguments:  genesis add 2 b=3   or   genesis.add(2, b=3)
Ask in words:     create a method to report the current system time
                  (translated into a mission brief, shown before it is sent)
:objects          list the root objects
:inspect TARGET   slots, parents and methods of an object (root name or OID)
:source T SEL     the source and history of a method
:brief TEXT       translate TEXT into a mission brief without sending it
:status           the kernel's status
:contemplate Q    a Socratic Contrapunto: BRICK answers Q, ROBIN builds on it, dissonance measured
:cycles          the newest cognitive cycles, one line each
:cycle ID         one cycle: checks, every candidate with its repairs, audit and trial, timings
:goals            the goals the system set itself while you were away
:proposals        pending codex amendments (ALFRED's drafts; nothing changes without you)
:approve ID       apply proposal ID to the codex (one transaction; the old codex is kept)
:reject ID [WHY]  turn proposal ID down
:help             this text
:quit             leave the console (Ctrl-D works too); Ctrl-C cancels waiting"""


class ConsoleError(BatosError):
    """A line the console cannot make sense of."""


@dataclass(frozen=True)
class Meta:
    name: str
    args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DirectSend:
    target: str
    selector: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NaturalLanguage:
    text: str


Command = Meta | DirectSend | NaturalLanguage | None


def _literal(node: ast.AST, source: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        raise ConsoleError(f"arguments must be literals (numbers, strings, lists, dicts): {ast.get_source_segment(source, node)}") from None


def parse_line(line: str, roots: set[str]) -> Command:
    """Classify one console line. Unknown first words mean natural language."""
    text = line.strip()
    if not text:
        return None
    if text.startswith(":"):
        parts = text[1:].split(None, 2)
        return Meta(parts[0].lower() if parts else "", parts[1:])
    dotted = _DOTTED.match(text)
    if dotted and (dotted.group(1) in roots or dotted.group(1).startswith("0x")):
        target, selector, call = dotted.groups()
        if call is None:
            return DirectSend(target, selector)
        try:
            expr = ast.parse("f" + call, mode="eval").body
        except SyntaxError as exc:
            raise ConsoleError(f"cannot parse the arguments: {exc.msg}") from None
        if not isinstance(expr, ast.Call) or any(isinstance(a, ast.Starred) for a in expr.args) or any(k.arg is None for k in expr.keywords):
            raise ConsoleError("write the arguments as in a plain call: genesis.add(1, b=2)")
        source = "f" + call
        return DirectSend(target, selector, [_literal(a, source) for a in expr.args], {k.arg: _literal(k.value, source) for k in expr.keywords})
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if len(words) >= 2 and (words[0] in roots or re.fullmatch(r"0x[0-9A-Fa-f]+", words[0])) and words[1].isidentifier():
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for word in words[2:]:
            key, sep, value = word.partition("=")
            if sep and key.isidentifier():
                kwargs[key] = parse_word(value)
            else:
                args.append(parse_word(word))
        return DirectSend(words[0], words[1], args, kwargs)
    return NaturalLanguage(text)


def format_value(value: Any) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, dict) and "$ref" in v:
            return f"<{v['$ref']}{' ' + v['root'] if v.get('root') else ''}: {v.get('description', '')[:60]}>"
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>"
        return v

    shown = plain(value)
    return shown if isinstance(shown, str) else json.dumps(shown, indent=2, ensure_ascii=False)


class Console:
    """Handles lines: parsing, translation, sending, and printing replies."""

    def __init__(
        self,
        client: KernelClient,
        out: TextIO,
        *,
        timeout: float = 600.0,
        translator: Callable[[], Translator] = RuleTranslator,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self.client = client
        self.out = out
        self.timeout = timeout
        self._make_translator = translator
        self._translator: Translator | None = None
        self.confirm = confirm
        self.roots: set[str] = set()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def write(self, text: str) -> None:
        """Text as it comes (a method being written, piece by piece)."""
        self.out.write(text)
        self.out.flush()

    def refresh_roots(self) -> list[dict[str, Any]]:
        reply = self.client.request(make_inspect("roots"), timeout=10)
        if reply.kind == "error":
            raise ConsoleError(reply.message)
        self.roots = {r["root"] for r in reply.view["roots"]}
        return reply.view["roots"]

    @property
    def translator(self) -> Translator:
        if self._translator is None:
            self._translator = self._make_translator()
        return self._translator

    def handle(self, line: str) -> bool:
        """Run one line; False means the Architect asked to leave."""
        try:
            command = parse_line(line, self.roots)
            if isinstance(command, Meta):
                return self._meta(command)
            if isinstance(command, DirectSend):
                self._send(command.target, command.selector, command.args, command.kwargs, None)
            elif isinstance(command, NaturalLanguage):
                brief = self._brief(command.text)
                if self.confirm is None or self.confirm("send it? [Y/n] "):
                    self._send(brief.target, brief.selector, brief.args, {}, brief.intent)
                else:
                    self.say("not sent")
        except KeyboardInterrupt:
            self.say("cancelled waiting (the kernel finishes the message on its own)")
        except BatosError as exc:
            self.say(f"error: {exc}")
        return True

    def _brief(self, text: str) -> MissionBrief:
        if not self.roots:
            try:
                self.refresh_roots()
            except NoAnswer:
                pass
        brief = self.translator.translate(text, sorted(self.roots))
        args = ", ".join(json.dumps(a) for a in brief.args)
        self.say(f"brief ({brief.translated_by}): {brief.target}.{brief.selector}({args})\n  intent: {brief.intent}")
        return brief

    def _send(self, target: str, selector: str, args: list[Any], kwargs: dict[str, Any], intent: str | None) -> None:
        reply = self.client.request(make_send(target, selector, args, kwargs, intent), timeout=self.timeout,
                                    on_reply=ProgressPrinter(self.write, indent="  ... "))
        if reply.kind == "error":
            self.say(f"error [{reply.code}]: {reply.message}")
        else:
            self.say(format_value(reply.value))

    def _meta(self, command: Meta) -> bool:
        name, args = command.name, command.args
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.say(HELP)
        elif name == "objects":
            for ref in self.refresh_roots():
                self.say(f"  {ref['root']:<18} {ref['$ref']:<6} {ref['description'][:70]}")
        elif name == "inspect" and len(args) == 1:
            self._view(make_inspect("object", args[0]))
        elif name == "source" and len(args) == 2:
            self._view(make_inspect("source", args[0], args[1]))
        elif name == "brief" and args:
            self._brief(" ".join(args))
        elif name == "status":
            status = self.client.request(make_ping(), timeout=10).status
            self.say(format_value(status))
        elif name == "contemplate" and args:
            self._contemplate(" ".join(args))
        elif name == "cycles":
            self._loop_view("cycles", args[:1], lambda c: f"  {c['id']} {c['state']:<12} {c['target']}.{c['selector']}  "
                            f"{c['seconds']:g}s  {c['reason'][:70]}", "no cycles yet")
        elif name == "cycle" and len(args) == 1:
            reply = self.client.request(make_send("orchestrator", "cycle", args[:1], {}, None), timeout=30)
            self.say(f"error [{reply.code}]: {reply.message}" if reply.kind == "error" else str(reply.value))
        elif name == "goals":
            self._loop_view("goals", [], lambda g: f"  {g['id']} [{g['status']}] {g['kind']}: {g['text']}"
                            + (f"\n      -> {g['result']}" if g.get("result") else ""), "no goals yet")
        elif name == "proposals":
            self._loop_view("proposals", [], lambda p: f"  {p['id']} {p['persona']}.{p['field']} (mean dissonance {p['mean']:.2f})\n"
                            f"      old: {p['old_text']}\n      new: {p['new_text']}\n      why: {p['rationale']}\n"
                            f"      :approve {p['id']}   or   :reject {p['id']} REASON", "no pending proposals")
        elif name in ("approve", "reject") and args:
            self._send("orchestrator", name, args[:1] + [" ".join(args[1:])] if len(args) > 1 else args[:1], {}, None)
        else:
            self.say(f"unknown or incomplete command :{name}; try :help")
        return True

    def _contemplate(self, question: str) -> None:
        def progress(reply: Any) -> None:
            if reply.kind == "progress":
                self.say(f"  ... [{reply.state}] {reply.detail}")

        reply = self.client.request(make_send("genesis", "contemplate", [], {}, question), timeout=self.timeout, on_reply=progress)
        if reply.kind == "error":
            self.say(f"error [{reply.code}]: {reply.message}")
            return
        r = reply.value
        judged = "unusable" if r["judged"] is None else f"{r['judged']:.2f}"
        self.say(f"BRICK: {r['brick']}\nROBIN: {r['robin']}\n"
                 f"dissonance {r['dissonance']:.2f} (ROBIN judged {judged}: {r['judge_reason']}; embedding distance {r['distance']:.2f})")

    def _loop_view(self, selector: str, args: list[Any], line: Any, empty: str) -> None:
        reply = self.client.request(make_send("orchestrator", selector, args, {}, None), timeout=30)
        if reply.kind == "error":
            self.say(f"error [{reply.code}]: {reply.message}")
            return
        self.say("\n".join(line(item) for item in reply.value) if reply.value else empty)

    def _view(self, request: Any) -> None:
        reply = self.client.request(request, timeout=30)
        if reply.kind == "error":
            self.say(f"error [{reply.code}]: {reply.message}")
            return
        view = reply.view
        if request.what == "source":
            self.say(f"# {view['selector']} v{view['version']} by {view['author']} (on {view['owner'].get('root') or view['owner']['$ref']})")
            self.say(view["source"].rstrip())
            for entry in view["history"][:-1]:
                self.say(f"#   earlier: v{entry['version']} by {entry['author']}")
            return
        self.say(f"{view.get('root') or view['$ref']}: {view['description']}")
        self.say(f"  parents: {', '.join(format_value(p) for p in view['parents']) or '(none)'}")
        for name, preview in view["slots"].items():
            self.say(f"  slot   {name:<16} {preview}")
        for selector, info in view["methods"].items():
            self.say(f"  method {selector:<16} v{info['version']} by {info['author']}")
        if view["inherited_methods"]:
            self.say(f"  inherited: {', '.join(view['inherited_methods'])}")


class Heartbeat(threading.Thread):
    """Pings the kernel from its own socket and keeps a one-line state."""

    def __init__(self, endpoint: str, curve: Any, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="batos-heartbeat")
        self.endpoint = endpoint
        self.curve = curve
        self.interval = interval
        self.state = "kernel: ?"
        self.stopping = threading.Event()

    def run(self) -> None:
        with KernelClient(self.endpoint, curve=self.curve, answer_timeout=self.interval, retries=0) as client:
            while not self.stopping.is_set():
                try:
                    status = client.request(make_ping(), timeout=self.interval)
                    s = status.status
                    loops = s.get("loops") or {}
                    waiting = f" · {loops['proposals_pending']} proposal(s) await you (:proposals)" if loops.get("proposals_pending") else ""
                    self.state = f"kernel up · pid {s['pid']} · {s['in_flight']} in flight · {self.endpoint}{waiting}"
                except NoAnswer:
                    self.state = f"kernel DOWN at {self.endpoint} (retrying)"
                    client.reconnect()
                self.stopping.wait(self.interval)


def _model_translator() -> Translator:
    from batos.substrate.embedded import assemble
    from clients.translate import ModelTranslator

    try:
        return ModelTranslator(assemble())
    except (ImportError, BatosError, OSError, ValueError) as exc:
        print(f"(embedded model unavailable: {exc}; using the rule parser)", file=sys.stderr)
        return RuleTranslator()


def run_console(args: argparse.Namespace) -> int:
    translator: Callable[[], Translator] = RuleTranslator if args.no_model else _model_translator
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # One identity for the whole session: reconnects keep it, so the kernel's
    # ROUTER hands the route over and its ledger recognises resent requests.
    client = connect(args.endpoint, args.curve_server_key, args.curve_client_key, identity=f"batos-console-{socket.gethostname()}-{os.getpid()}".encode())
    with client:
        console = Console(client, sys.stdout, timeout=args.timeout, translator=translator, confirm=_ask if interactive else None)
        try:
            console.refresh_roots()
        except (NoAnswer, BatosError) as exc:
            console.say(f"(no kernel yet: {exc})")
        if not interactive:
            for line in sys.stdin:
                if not console.handle(line):
                    break
            return 0
        return _interactive(console, args)


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("", "y", "yes")
    except EOFError:
        return False


def _interactive(console: Console, args: argparse.Namespace) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    heartbeat = Heartbeat(args.endpoint, console.client.curve)
    heartbeat.start()
    history = Path(args.history or Path.home() / ".batos_history")
    session: PromptSession[str] = PromptSession(history=FileHistory(str(history)), bottom_toolbar=lambda: heartbeat.state, refresh_interval=1.0)
    console.say("BAT OS console. :help for help, :quit to leave.")
    try:
        while True:
            try:
                line = session.prompt("Architect > ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not console.handle(line):
                break
    finally:
        heartbeat.stopping.set()
    return 0
