"""The cognitive cycle: a message nobody understands becomes a learned method.

A cycle is an object in the image (a child of the ``cognitive_cycle``
prototype) holding the mission brief, its state, every artifact and the
whole transition history. The engine drives it through the Prototypal State
Machine::

    IDLE -> DECOMPOSING -> DELEGATING -> SYNTHESIZING -> VALIDATING -> COMPLETE
                                             ^               |
                                             +-- feedback ---+  (up to max_attempts, then FAILED)

Each transition is its own small transaction, and model inference happens
between transactions, never inside one: a crash loses at most the step in
flight, and on restart :meth:`CycleEngine.resume_pending` carries every
unfinished cycle on from its last committed state. The last step — install
the method and record the outcome — is a single atomic commit; until then the
target object is never touched, so a failed cycle leaves it exactly as it was.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from persistent.list import PersistentList
from ZODB.DB import DB

from batos import memory
from batos.cognition.dissonance import cycle_dissonance, record_signal
from batos.cognition.guardian import audit
from batos.substrate.llm import ModelError
from batos.substrate.personas import Personas
from batos.core.metalog import MetaLog
from batos.cognition.retrieval import retrieve, words
from batos.sandbox.trial import Limits, TrialResult, checks_from_intent, detach, run_trial, snapshot
from batos.core.txn import reading, transact
from batos.core.errors import MessageNotUnderstood
from batos.core.hooks import Learning
from batos.core.uvm import UvmObject
from batos.cognition.hooks import install as install_hooks
from batos.core.refs import name_of, oid_hex

TERMINAL = frozenset({"COMPLETE", "FAILED"})
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class CycleConfig:
    max_attempts: int = 3
    max_restarts: int = 3
    limits: Limits = Limits()
    plan_tokens: int = 160
    code_tokens: int = 700


class StaleCycle(Exception):
    """The cycle moved on under us (another runner, or a resume): stop driving."""


def open_cycle(root: Any, receiver: UvmObject, selector: str, args: list[Any], kwargs: dict[str, Any], intent: str | None) -> Learning:
    """Create the cycle for a message, or join the unfinished one for the same message.

    Runs inside the kernel's send transaction. ``active_cycles`` is keyed by
    the message (receiver OID and selector), so two identical messages racing
    here insert the same BTree key — a conflict BTrees cannot resolve — and the
    retry of the loser finds and joins the winner's cycle.
    """
    if "orchestrator" not in root:
        raise MessageNotUnderstood(receiver, selector)
    orchestrator = root["orchestrator"]
    key = f"{oid_hex(receiver)}:{selector}"
    existing = orchestrator.active_cycles.get(key)
    if existing is not None and existing.state not in TERMINAL:
        return Learning(existing.cycle_id)
    cycle_id = uuid.uuid4().hex[:12]
    now = time.time()
    cycle = UvmObject(
        parents=(root["cognitive_cycle"],),
        name=f"cycle {cycle_id}",
        description=f"learning {selector!r} for {name_of(receiver)}",
        cycle_id=cycle_id,
        key=key,
        target=receiver,
        selector=selector,
        args=tuple(args),
        kwargs=dict(kwargs),
        intent=intent or "",
        state="IDLE",
        attempt=0,
        restarts=0,
        created_at=now,
        updated_at=now,
        history=PersistentList(),
        artifacts=PersistentList(),
        outcome=None,
    )
    orchestrator.active_cycles[key] = cycle
    orchestrator.cycles[cycle_id] = cycle
    return Learning(cycle_id)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _signature(source: str, selector: str) -> str:
    try:
        func = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == selector)
    except (SyntaxError, StopIteration):
        return f"{selector}(self, ...)"
    return f"{selector}({ast.unparse(func.args)})"


# -- prompts ------------------------------------------------------------------------

PLAN_SCHEMA = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}},
    "required": ["queries"],
}

CODE_RULES = """\
Write exactly one Python function named `{selector}` whose first parameter is `self`.
Rules:
- Standard library only, imported at the top: math, datetime, json, re, collections, itertools, functools,
  statistics, string, random, hashlib, time, decimal, fractions, textwrap (no os, sys, files or network).
- No eval, exec, open, getattr with computed names, global or nonlocal; no names starting with an underscore,
  except the line `self._p_changed = True`.
- Read the object's data as self.<slot>. If the method assigns to self.<slot> or changes a list or dict held
  by self, its last statement before returning must be `self._p_changed = True`.
- Return the value asked for (do not print it).
Answer with the code only, in one ```python block."""


def _plan_prompt(view: dict[str, Any]) -> str:
    return (
        f"Mission: teach the object {view['target_name']} to answer the message "
        f"{view['selector']}({view['call']}).\nIntent: {view['intent'] or '(none given)'}\n"
        "Give 1 to 3 short search queries for finding existing methods or knowledge that would help write it. "
        'Answer as JSON: {"queries": [...]}'
    )


def _code_prompt(view: dict[str, Any]) -> str:
    receiver = view["receiver"]
    slots = ", ".join(f"{k}={v!r}"[:80] for k, v in receiver["slots"].items()) or "(none)"
    methods = "\n".join(f"  self.{_signature(src, sel)}" for sel, src in receiver["methods"].items()) or "  (none)"
    parts = [
        f"Object: {view['target_name']}\nIts slots: {slots}\nMethods it already has (call them as self.<name>(...)):\n{methods}",
        f"The message to answer: {view['target_name']}.{view['selector']}({view['call']})"
        f" -- {len(view['args'])} positional argument(s){', keywords ' + ', '.join(view['kwargs']) if view['kwargs'] else ''}.",
        f"Intent: {view['intent'] or '(none given; infer it from the name)'}",
    ]
    if view["context"]:
        examples = "\n\n".join(
            f"# note: {c['owner']}\n# {c['source'].strip()[:400]}" if c["kind"] == "memory" else f"# {c['owner']}.{c['selector']}\n{c['source'].strip()}"
            for c in view["context"][:3]
        )
        parts.append(f"Related methods and notes already in the system (reuse their ideas):\n{examples}")
    if view["feedback"]:
        parts.append(f"Your previous attempt was rejected:\n{view['previous']}\nProblems:\n{view['feedback']}\nFix them.")
    parts.append(CODE_RULES.format(selector=view["selector"]))
    return "\n\n".join(parts)


# -- the engine ---------------------------------------------------------------------


@dataclass
class _Running:
    done: threading.Event = field(default_factory=threading.Event)


class CycleEngine:
    """Drives cycles; thread-safe. One runner per cycle, other callers wait."""

    def __init__(
        self,
        db: DB,
        personas: Personas,
        *,
        config: CycleConfig = CycleConfig(),
        log: MetaLog | None = None,
    ) -> None:
        install_hooks()  # an image driven by an engine learns what it does not understand
        self.db = db
        self.personas = personas  # HostedPersonas in the product; batos.testing.SharedPersonas in tests
        self.config = config
        self.log = log
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        # called with (cycle_id, outcome) when a cycle this engine drove ends: the slower loops listen
        self.finished_hooks: list[Callable[[str, dict[str, Any]], None]] = []

    @property
    def running(self) -> int:
        return len(self._running)

    def status(self) -> dict[str, Any]:
        """For the kernel's status: cycles being driven, models loaded, model calls."""
        return {"cycles_running": self.running, **self.personas.status()}

    def _record(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.record(event, **fields)

    # -- driving ----------------------------------------------------------------

    def drive(self, cycle_id: str, progress: Progress | None = None, gate: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run the cycle to a terminal state (or wait for whoever runs it); return its outcome.

        *gate* is called before every step: a self-generated goal's cycle waits
        there while the Architect's messages are being served.
        """
        with self._lock:
            running = self._running.get(cycle_id)
            owner = running is None
            if owner:
                running = self._running[cycle_id] = _Running()
        if not owner:
            if progress:
                progress("WAITING", f"joined cycle {cycle_id}, already running")
            running.done.wait()
            return self.outcome(cycle_id)
        try:
            while True:
                if gate is not None:
                    gate()
                view = self._view(cycle_id)
                if view["state"] in TERMINAL:
                    outcome = self.outcome(cycle_id)
                    self._announce(cycle_id, outcome)
                    return outcome
                try:
                    self._step(view, progress or (lambda state, detail: None))
                except StaleCycle:
                    continue  # re-read and carry on from whatever state it is in now
                except Exception as exc:  # noqa: BLE001 - a broken step must end the cycle, not loop on resume
                    reason = f"model unavailable: {exc}" if isinstance(exc, ModelError) else f"internal error in {view['state']}: {type(exc).__name__}: {exc}"
                    self._finish(view, "FAILED", reason, {})
                    if progress:
                        progress("FAILED", reason)
        finally:
            with self._lock:
                del self._running[cycle_id]
            running.done.set()

    def _announce(self, cycle_id: str, outcome: dict[str, Any]) -> None:
        for hook in self.finished_hooks:
            try:
                hook(cycle_id, outcome)
            except Exception as exc:  # noqa: BLE001 - a listener's bug must not fail the Architect's message
                self._record("hook_failed", cycle=cycle_id, error=f"{type(exc).__name__}: {exc}")

    def outcome(self, cycle_id: str) -> dict[str, Any]:
        with reading(self.db) as root:
            cycle = root["orchestrator"].cycles[cycle_id]
            return {"cycle": cycle_id, "state": cycle.state, "outcome": dict(cycle.outcome or {})}

    def resume_pending(self) -> list[str]:
        """After a restart: count the interruption of every unfinished cycle and go on."""
        with reading(self.db) as root:
            pending = [c.cycle_id for c in root["orchestrator"].active_cycles.values() if c.state not in TERMINAL]
        resumed = []
        for cycle_id in pending:
            def bump(root: Any, cycle_id: str = cycle_id) -> int:
                cycle = root["orchestrator"].cycles[cycle_id]
                cycle.restarts += 1
                return cycle.restarts

            restarts = transact(self.db, bump, note=f"cycle {cycle_id} resumed")
            self._record("resumed", cycle=cycle_id, restarts=restarts)
            if restarts > self.config.max_restarts:
                view = self._view(cycle_id)
                self._finish(view, "FAILED", f"interrupted {restarts} times; giving up", {})
            else:
                resumed.append(cycle_id)
                self.drive(cycle_id)
        return resumed

    def _view(self, cycle_id: str) -> dict[str, Any]:
        """Everything the next step needs, read in one short transaction, as plain data."""
        with reading(self.db) as root:
            cycle = root["orchestrator"].cycles[cycle_id]
            target = cycle.target
            artifacts = [dict(a) for a in cycle.artifacts]
            latest = lambda kind: next((a for a in reversed(artifacts) if a["kind"] == kind), None)  # noqa: E731
            brief, plan, context, candidate = latest("brief"), latest("plan"), latest("context"), latest("candidate")
            verdict = latest("verdict")
            call = ", ".join([repr(a) for a in cycle.args] + [f"{k}={v!r}" for k, v in cycle.kwargs.items()])
            return {
                "cycle": cycle_id,
                "state": cycle.state,
                "attempt": cycle.attempt,
                "selector": cycle.selector,
                "args": [detach(a) for a in cycle.args],
                "kwargs": {k: detach(v) for k, v in cycle.kwargs.items()},
                "call": call,
                "intent": cycle.intent,
                "target_name": name_of(target),
                "target_ref": oid_hex(target),
                "receiver": snapshot(target, cycle.selector),
                "queries": plan["queries"] if plan else [],
                "context": context["snippets"] if context else [],
                "candidate": candidate["text"] if candidate else None,
                "previous": verdict["source"] if verdict and verdict.get("source") else (candidate["text"] if candidate else ""),
                "feedback": verdict["feedback"] if verdict and verdict["attempt"] == cycle.attempt - 1 else "",
                "system": root["brick"].system_prompt(),
                "pins": brief.get("pins") if brief else None,
            }

    def _transition(self, view: dict[str, Any], to: str, note: str, artifact: dict[str, Any] | None = None, attempt: int | None = None) -> None:
        expected = view["state"]

        def work(root: Any) -> None:
            cycle = root["orchestrator"].cycles[view["cycle"]]
            if cycle.state != expected:
                raise StaleCycle(f"cycle {view['cycle']} is {cycle.state}, not {expected}")
            now = time.time()
            if artifact is not None:
                cycle.artifacts.append({**artifact, "at": now})
            cycle.history.append({"from": expected, "to": to, "at": now, "note": note})
            cycle.state = to
            cycle.updated_at = now
            if attempt is not None:
                cycle.attempt = attempt

        transact(self.db, work, note=f"cycle {view['cycle']}: {expected} -> {to}")
        self._record(
            "transition", cycle=view["cycle"], src=expected, dst=to, note=note,
            artifact=(artifact or {}).get("kind"), sha256=(artifact or {}).get("sha256"),
            duration_s=(artifact or {}).get("duration_s"), attempt=attempt if attempt is not None else view["attempt"],
        )

    def _finish(self, view: dict[str, Any], state: str, reason: str, artifact: dict[str, Any], source: str | None = None) -> None:
        """COMPLETE (install + outcome + skill index) or FAILED, in one transaction."""
        expected = view["state"]
        skill = None
        if source is not None:  # embed before the transaction: inference stays outside
            skill = memory.prepare_skill(f"skill:{view['target_ref']}:{view['selector']}", view["target_name"],
                                         view["selector"], view["intent"], source)

        def work(root: Any) -> None:
            orchestrator = root["orchestrator"]
            cycle = orchestrator.cycles[view["cycle"]]
            if cycle.state != expected:
                raise StaleCycle(f"cycle {view['cycle']} is {cycle.state}, not {expected}")
            now = time.time()
            if source is not None:
                record = cycle.target.define_method(cycle.selector, source, author="BRICK", cycle=cycle.cycle_id)
                orchestrator.skills[cycle.key] = {
                    "owner": cycle.target, "selector": cycle.selector, "intent": cycle.intent,
                    "cycle": cycle.cycle_id, "version": record.version,
                }
                memory.store(root["knowledge_catalog"], skill)
            if artifact:
                cycle.artifacts.append({**artifact, "at": now})
            cycle.history.append({"from": expected, "to": state, "at": now, "note": reason})
            cycle.state = state
            cycle.updated_at = now
            dissonance = cycle_dissonance([dict(a) for a in cycle.artifacts], state)
            cycle.outcome = {"state": state, "reason": reason, "attempts": cycle.attempt + (1 if state == "COMPLETE" else 0),
                             "dissonance": dissonance}
            record_signal(orchestrator, dissonance, "cycle", cycle.cycle_id)
            del orchestrator.active_cycles[cycle.key]

        transact(self.db, work, note=f"cycle {view['cycle']}: {expected} -> {state}")
        self._record("finished", cycle=view["cycle"], state=state, reason=reason, selector=view["selector"], target=view["target_ref"])

    # -- the states -------------------------------------------------------------

    def _step(self, view: dict[str, Any], progress: Progress) -> None:
        state = view["state"]
        if state == "IDLE":
            with reading(self.db) as root:
                pins = self.personas.pin(root)  # every later step speaks through these versions
            self._transition(view, "DECOMPOSING", "brief accepted", {
                "kind": "brief", "selector": view["selector"], "call": view["call"], "intent": view["intent"],
                "target": view["target_ref"], "sha256": _digest(json.dumps([view["selector"], view["call"], view["intent"]])),
                "pins": pins,
            })
            progress("DECOMPOSING", f"BRICK plans how to learn {view['selector']!r}")
        elif state == "DECOMPOSING":
            queries, text, took, speaker = self._plan(view)
            self._transition(view, "DELEGATING", f"{len(queries)} queries", {
                "kind": "plan", "persona": "BRICK", "model": speaker, "queries": queries,
                "text": text, "sha256": _digest(text), "duration_s": took,
            })
            progress("DELEGATING", "BABS searches memory: " + "; ".join(queries))
        elif state == "DELEGATING":
            started = time.monotonic()
            with reading(self.db) as root:
                target = root["orchestrator"].cycles[view["cycle"]].target
                snippets = retrieve(root, target, view["queries"])
            found = ", ".join(s["selector"] for s in snippets) or "nothing related"
            self._transition(view, "SYNTHESIZING", f"{len(snippets)} snippets", {
                "kind": "context", "persona": "BABS", "snippets": snippets,
                "sha256": _digest(json.dumps(snippets, sort_keys=True, default=repr)), "duration_s": time.monotonic() - started,
            })
            progress("SYNTHESIZING", f"found {found}; BRICK writes attempt {view['attempt'] + 1}")
        elif state == "SYNTHESIZING":
            started = time.monotonic()
            brick = self.personas.speaker("BRICK", view["pins"])
            text = brick.complete(view["system"], _code_prompt(view), max_tokens=self.config.code_tokens,
                                  temperature=0.1 if view["attempt"] == 0 else 0.6)
            self._transition(view, "VALIDATING", f"candidate {view['attempt'] + 1}", {
                "kind": "candidate", "persona": "BRICK", "model": brick.name, "attempt": view["attempt"],
                "text": text, "sha256": _digest(text), "duration_s": time.monotonic() - started,
            })
            progress("VALIDATING", "the guardian audits, then a trial run")
        elif state == "VALIDATING":
            self._validate(view, progress)

    def _plan(self, view: dict[str, Any]) -> tuple[list[str], str, float, str]:
        started = time.monotonic()
        brick = self.personas.speaker("BRICK", view["pins"])
        text = brick.complete(view["system"], _plan_prompt(view), max_tokens=self.config.plan_tokens,
                              temperature=0.0, json_schema=PLAN_SCHEMA)
        try:
            queries = [str(q).strip() for q in json.loads(text)["queries"] if str(q).strip()][:3]
        except (ValueError, TypeError, KeyError):
            queries = []
        if not queries:  # an unusable plan still lets the cycle go on
            queries = [" ".join(sorted(words(view["selector"]))), view["intent"] or view["selector"]]
        return queries, text, time.monotonic() - started, brick.name

    def _validate(self, view: dict[str, Any], progress: Progress) -> None:
        report = audit(view["candidate"] or "", view["selector"])
        attempt = view["attempt"]
        trial: TrialResult | None = None
        checks = checks_from_intent(view["intent"])
        if report.accepted:
            trial = run_trial(view["selector"], report.source, view["receiver"], view["args"], view["kwargs"], checks, self.config.limits)
        self._record("audit", cycle=view["cycle"], attempt=attempt, accepted=report.accepted, errors=report.errors)
        if trial is not None:
            self._record("trial", cycle=view["cycle"], attempt=attempt, **trial.as_dict())
        feedback = report.feedback() if not report.accepted else (trial.feedback() if trial and not trial.passed else "")
        verdict = {
            "kind": "verdict", "attempt": attempt, "accepted": report.accepted, "audit_errors": report.errors,
            "trial": trial.as_dict() if trial else None, "checks": [c.text for c in checks],
            "source": report.source, "feedback": feedback, "sha256": _digest(report.source or ""),
        }
        if report.accepted and trial is not None and trial.passed:
            self._finish(view, "COMPLETE", f"installed {view['selector']} after {attempt + 1} attempt(s)", verdict, report.source)
            progress("COMPLETE", f"{view['selector']} installed on {view['target_name']}")
        elif attempt + 1 >= self.config.max_attempts:
            self._finish(view, "FAILED", f"no acceptable method after {attempt + 1} attempts; last problems: {feedback}", verdict)
            progress("FAILED", feedback.splitlines()[0] if feedback else "rejected")
        else:
            self._transition(view, "SYNTHESIZING", "rejected; retry with feedback", verdict, attempt=attempt + 1)
            progress("SYNTHESIZING", f"attempt {attempt + 1} rejected ({feedback.splitlines()[0] if feedback else '?'}); retrying")

