"""The trial: run an audited candidate in the sandbox before installing it.

The candidate runs exactly as an installed method would (:mod:`batos.sandbox.runtime`:
a locked-down worker, hard limits per call), on the real receiver, but its
changes are never applied. Each run (the message's own arguments, then each
check) is a fresh call on the receiver as the image holds it.

The verdict is the kernel's: the worker returns values, never "passed", and
the expected values of the checks never reach it, so a candidate that
writes a fake verdict, or exits early, cannot make itself pass.

Examples in the intent ("``>>> f(2)`` / ``4``", "``f(2) == 4``", "for example
f(2) returns 4") become checks the trial runs as well.
"""

from __future__ import annotations

import ast
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batos.core.errors import MethodFault
from batos.core.uvm import MethodRecord, UvmObject
from batos.sandbox.runtime import MethodLimits, MethodRuntime


@dataclass(frozen=True)
class Check:
    text: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any


@dataclass
class TrialResult:
    ok: bool
    value: str | None = None
    error: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.ok and all(c.get("passed") for c in self.checks)

    def feedback(self) -> str:
        lines = []
        if self.error:
            lines.append(f"Calling it with the message's arguments failed: {self.error}")
        for check in self.checks:
            if not check.get("passed"):
                lines.append(f"Check failed: {check['text']} -> expected {check['expected']}, got {check.get('got')}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "value": self.value, "error": self.error, "checks": self.checks, "duration_s": round(self.duration_s, 3)}


# -- checks from the intent ------------------------------------------------------

_CALL = r"([A-Za-z_]\w*)\(([^()]*(?:\([^()]*\)[^()]*)*)\)"
_LITERAL = r"(-?[\d.]+(?:e-?\d+)?|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|True|False|None)"
_INLINE = re.compile(_CALL + r"\s*(?:==|->|=>|returns|should return|gives|is|equals)\s*" + _LITERAL)
_DOCTEST = re.compile(r">>>\s*(?:\w+\.)?" + _CALL + r"\s*\n\s*(.+)")


def _parse_call(args_text: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    try:
        call = ast.parse(f"f({args_text})", mode="eval").body
        assert isinstance(call, ast.Call)
        return tuple(ast.literal_eval(a) for a in call.args), {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (SyntaxError, ValueError, AssertionError, TypeError):
        return None


def checks_from_intent(intent: str | None) -> list[Check]:
    """Examples the Architect wrote into the intent, as calls with expected results."""
    if not intent:
        return []
    found: list[Check] = []
    for pattern in (_DOCTEST, _INLINE):
        for match in pattern.finditer(intent):
            _name, args_text, expected_text = match.groups()
            call = _parse_call(args_text)
            try:
                expected = ast.literal_eval(expected_text.strip().rstrip(".,;"))
            except (SyntaxError, ValueError):
                continue
            if call is not None:
                check = Check(match.group(0).strip(), call[0], call[1], expected)
                if check not in found:
                    found.append(check)
    return found


# -- running it -------------------------------------------------------------------


def same(got: Any, expected: Any) -> bool:
    """Equality as a person reading the example means it: floats approximately,
    a tuple equal to the list written in the example."""
    if isinstance(got, float) or isinstance(expected, float):
        try:
            return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
        except TypeError:
            return False
    if isinstance(got, tuple) and isinstance(expected, list):
        got = list(got)
    return bool(got == expected)


def run_trial(
    sandbox: MethodRuntime,
    receiver: UvmObject,
    selector: str,
    source: str,
    args: list[Any],
    kwargs: dict[str, Any],
    checks: Sequence[Check] = (),
    limits: MethodLimits | None = None,
) -> TrialResult:
    """Inside a (reading) transaction: the candidate's calls and the kernel's verdict."""
    record = MethodRecord(selector, source, 0, "trial", None)
    started = time.monotonic()

    def call(call_args: Sequence[Any], call_kwargs: Mapping[str, Any]) -> Any:
        return sandbox.run(receiver, receiver, record, list(call_args), dict(call_kwargs), override=source, apply=False, limits=limits)

    result = TrialResult(ok=False)
    try:
        value = call(args, kwargs)
        result.ok, result.value = True, repr(value)[:2000]
    except MethodFault as exc:
        result.error = str(exc)
    for check in checks:
        entry: dict[str, Any] = {"text": check.text, "expected": repr(check.expected)}
        try:
            got = call(check.args, check.kwargs)
            entry["got"], entry["passed"] = repr(got)[:500], same(got, check.expected)
        except MethodFault as exc:
            entry["got"], entry["passed"] = str(exc)[:300], False
        result.checks.append(entry)
    result.duration_s = time.monotonic() - started
    return result
