"""What the cycle asks BRICK: the plan (search queries) and the method itself.

Kept apart from the engine so the wording can be read, and tuned, in one place.
"""

from __future__ import annotations

import ast

from batos.cognition.step import StepInput

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


def _signature(source: str, selector: str) -> str:
    try:
        func = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == selector)
    except (SyntaxError, StopIteration):
        return f"{selector}(self, ...)"
    return f"{selector}({ast.unparse(func.args)})"


def plan_prompt(step: StepInput) -> str:
    return (
        f"Mission: teach the object {step.target_name} to answer the message "
        f"{step.selector}({step.call}).\nIntent: {step.intent or '(none given)'}\n"
        "Give 1 to 3 short search queries for finding existing methods or knowledge that would help write it. "
        'Answer as JSON: {"queries": [...]}'
    )


def code_prompt(step: StepInput) -> str:
    receiver = step.receiver
    slots = ", ".join(f"{k}={v}"[:80] for k, v in receiver["slots"].items()) or "(none)"
    methods = "\n".join(f"  self.{_signature(src, sel)}" for sel, src in receiver["methods"].items()) or "  (none)"
    parts = [
        f"Object: {step.target_name}\nIts slots: {slots}\nMethods it already has (call them as self.<name>(...)):\n{methods}",
        f"The message to answer: {step.target_name}.{step.selector}({step.call})"
        f" -- {len(step.args)} positional argument(s){', keywords ' + ', '.join(step.kwargs) if step.kwargs else ''}.",
        f"Intent: {step.intent or '(none given; infer it from the name)'}",
    ]
    if step.context:
        examples = "\n\n".join(
            f"# note: {c['owner']}\n# {c['source'].strip()[:400]}" if c["kind"] == "memory" else f"# {c['owner']}.{c['selector']}\n{c['source'].strip()}"
            for c in step.context[:3]
        )
        parts.append(f"Related methods and notes already in the system (reuse their ideas):\n{examples}")
    if step.feedback:
        parts.append(f"Your previous attempt was rejected:\n{step.previous}\nProblems:\n{step.feedback}\nFix them.")
    parts.append(CODE_RULES.format(selector=step.selector))
    return "\n\n".join(parts)
