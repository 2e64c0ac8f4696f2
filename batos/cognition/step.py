"""The step input: everything the cycle's next step needs, read in one short transaction.

A step runs model inference and trial runs outside any transaction, so it
must not hold persistent objects: :func:`read_step` copies what it needs out
of the image into a frozen :class:`StepInput` (the arguments and the
receiver described for prompts, the latest artifacts unpacked). The trial
reads the live receiver and arguments again, in its own transaction.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batos.cognition.artifacts import Brief, Candidate, Checks, Context, Plan, Verdict, latest
from batos.cognition.states import CycleState
from batos.core.refs import name_of, oid_hex
from batos.sandbox.trial import call_text


@dataclass(frozen=True)
class StepInput:
    """Plain values only, so a step can run for minutes without a transaction open."""

    cycle: str
    state: CycleState
    attempt: int  # the attempt (a round of candidates) being made: 0 for the first
    index: int  # the candidate within the attempt: 0 for its first
    selector: str
    args: list[str]  # the arguments' reprs, for prompts
    kwargs: dict[str, str]
    call: str  # the arguments as text, for prompts and the brief
    intent: str
    target_name: str
    target_ref: str  # the receiver's OID, hex
    receiver: dict[str, Any]  # for the prompt: its slots (type, short repr) and the methods it understands (signature, doc line)
    system: str  # BRICK's system prompt
    pins: dict[str, dict[str, Any]] | None  # the persona versions the brief pinned
    queries: list[str]  # the plan's
    context: list[dict[str, Any]]  # the snippets retrieval found
    candidate: Candidate | None  # the latest candidate, as written and as repaired
    previous: str  # the last rejected candidate, for the feedback prompt
    feedback: str  # why it was rejected; empty before any rejection
    failures: list[str]  # the failure class of every verdict so far, in order
    shapes: dict[str, str]  # normalised-AST digest -> "attempt.index" of every candidate so far
    checks: Checks | None  # the checks BRICK wrote from the intent, once written
    verdicts: list[Verdict]  # this attempt's verdicts, in order
    stateful: bool  # a candidate tried so far keeps state on the receiver


def read_step(root: Any, cycle_id: str) -> StepInput:
    """Inside a reading transaction: the :class:`StepInput` for the cycle's current state."""
    cycle = root["orchestrator"].cycles[cycle_id]
    target = cycle.target
    records = [dict(a) for a in cycle.artifacts]
    brief, plan, context = latest(records, Brief), latest(records, Plan), latest(records, Context)
    candidate, verdict = latest(records, Candidate), latest(records, Verdict)
    verdicts = [Verdict.from_record(r) for r in records if r["kind"] == Verdict.kind]
    candidates = [Candidate.from_record(r) for r in records if r["kind"] == Candidate.kind]
    return StepInput(
        cycle=cycle_id,
        state=CycleState(cycle.state),
        attempt=cycle.attempt,
        index=getattr(cycle, "index", 0),  # cycles from before candidates were counted within an attempt
        selector=cycle.selector,
        args=[repr(a)[:200] for a in cycle.args],
        kwargs={k: repr(v)[:200] for k, v in cycle.kwargs.items()},
        call=call_text(cycle.args, cycle.kwargs),
        intent=cycle.intent,
        target_name=name_of(target),
        target_ref=oid_hex(target),
        receiver=describe_receiver(target, cycle.selector),
        system=root["brick"].system_prompt(),
        pins=brief.pins if brief else None,
        queries=plan.queries if plan else [],
        context=context.snippets if context else [],
        candidate=candidate,
        previous=(verdict.source or "") if verdict else "",
        feedback=verdict.feedback if verdict else "",
        failures=[v.failure for v in verdicts if v.failure],
        shapes={c.shape: f"{c.attempt + 1}.{c.index + 1}" for c in reversed(candidates) if c.shape and c.duplicate_of is None},
        checks=latest(records, Checks),
        verdicts=[v for v in verdicts if v.attempt == cycle.attempt],
        stateful=any(v.trial and v.trial.get("stateful") for v in verdicts),
    )


# slots every object has, not state its methods keep: shown them on a fresh object, the 1.5B model
# "kept" a counter by appending to self.description and rewrote self.name (bench counter, two runs)
BOOKKEEPING = frozenset({"parents", "name", "description"})


def describe_receiver(receiver: Any, selector: str) -> dict[str, Any]:
    """What the code prompt shows of the receiver: each slot's type and a short
    value (but the :data:`BOOKKEEPING` ones), and each method it understands (its
    own first) as a signature with the first line of its docstring."""
    methods: dict[str, str] = {}
    for obj in receiver.ancestors():
        for name in obj.method_names():
            if name != selector and name not in methods:
                methods[name] = method_summary(obj.method_record(name).source, name)
    slots = {k: slot_summary(getattr(receiver, k)) for k in receiver.slot_names() if k not in BOOKKEEPING}
    return {"slots": slots, "methods": methods}


def slot_summary(value: Any) -> str:
    """``list of 2: ['buy milk', 'call mum']``: what a slot holds, at a glance."""
    kind = type(value).__name__
    kind = {"PersistentList": "list", "PersistentMapping": "dict", "OOBTree": "dict"}.get(kind, kind)
    size = f" of {len(value)}" if isinstance(value, (list, dict, set, tuple, str)) or kind in ("list", "dict") else ""
    text = repr(value if kind not in ("list", "dict") or isinstance(value, (list, dict)) else (list(value) if kind == "list" else dict(value)))
    return f"{kind}{size}: {text[:80] + ('...' if len(text) > 80 else '')}"


def method_summary(source: str, selector: str) -> str:
    """``balance(self) -- return the balance``: the signature and the docstring's first line."""
    try:
        func = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == selector)
    except (SyntaxError, StopIteration):
        return f"{selector}(self, ...)"
    doc = (ast.get_docstring(func) or "").strip().splitlines()
    return f"{selector}({ast.unparse(func.args)})" + (f" -- {doc[0][:100]}" if doc else "")
