"""The step input: everything the cycle's next step needs, read in one short transaction.

A step runs model inference and trial runs outside any transaction, so it
must not hold persistent objects: :func:`read_step` copies what it needs out
of the image into a frozen :class:`StepInput` (the arguments and the
receiver described for prompts, the latest artifacts unpacked). The trial
reads the live receiver and arguments again, in its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batos.cognition.artifacts import Brief, Candidate, Context, Plan, Verdict, latest
from batos.cognition.states import CycleState
from batos.core.refs import name_of, oid_hex


def call_text(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The message's arguments as they would be written in a call: ``5, base=2``."""
    return ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])


@dataclass(frozen=True)
class StepInput:
    """Plain values only, so a step can run for minutes without a transaction open."""

    cycle: str
    state: CycleState
    attempt: int  # the attempt being made: 0 for the first candidate
    selector: str
    args: list[str]  # the arguments' reprs, for prompts
    kwargs: dict[str, str]
    call: str  # the arguments as text, for prompts and the brief
    intent: str
    target_name: str
    target_ref: str  # the receiver's OID, hex
    receiver: dict[str, Any]  # for the prompt: its slots (short reprs) and the methods it understands (sources)
    system: str  # BRICK's system prompt
    pins: dict[str, dict[str, Any]] | None  # the persona versions the brief pinned
    queries: list[str]  # the plan's
    context: list[dict[str, Any]]  # the snippets retrieval found
    candidate: str | None  # the latest candidate's text, as the model wrote it
    previous: str  # what the last rejected attempt was, for the feedback prompt
    feedback: str  # why the previous attempt was rejected; empty on a first attempt


def read_step(root: Any, cycle_id: str) -> StepInput:
    """Inside a reading transaction: the :class:`StepInput` for the cycle's current state."""
    cycle = root["orchestrator"].cycles[cycle_id]
    target = cycle.target
    records = [dict(a) for a in cycle.artifacts]
    brief, plan, context = latest(records, Brief), latest(records, Plan), latest(records, Context)
    candidate, verdict = latest(records, Candidate), latest(records, Verdict)
    return StepInput(
        cycle=cycle_id,
        state=CycleState(cycle.state),
        attempt=cycle.attempt,
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
        candidate=candidate.text if candidate else None,
        previous=verdict.source if verdict and verdict.source else (candidate.text if candidate else ""),
        # only the verdict on the attempt just before this one is feedback for it
        feedback=verdict.feedback if verdict and verdict.attempt == cycle.attempt - 1 else "",
    )


def describe_receiver(receiver: Any, selector: str) -> dict[str, Any]:
    """What the code prompt shows of the receiver: its slots as short reprs,
    and the sources of the methods it understands (its own first)."""
    methods: dict[str, str] = {}
    for obj in receiver.ancestors():
        for name in obj.method_names():
            if name != selector and name not in methods:
                methods[name] = obj.method_record(name).source
    slots = {k: repr(getattr(receiver, k))[:200] for k in receiver.slot_names() if k != "parents"}
    return {"slots": slots, "methods": methods}
