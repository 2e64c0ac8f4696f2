"""The trial: run an audited candidate in the sandbox before installing it.

The candidate runs exactly as an installed method would (:mod:`batos.sandbox.runtime`:
a locked-down worker, hard limits per call), on the real receiver, but its
changes never reach the image: they are applied inside the caller's
(reading) transaction and rolled back to a savepoint after each sequence.

Two sequences run, each from the receiver as the image holds it:

1. the message's own arguments — and, for a candidate that keeps state on
   its object, the same message a second time with the state the first call
   left, because "works once" is not "works" for a method that keeps state
   (a first-use initialisation that breaks the second time, say; a second
   call refused on purpose, ``raise ValueError`` for an item removed twice,
   is the method doing its job);
2. the checks, in order, with state carried from one to the next, as a
   person reads a list of examples for a method that keeps state.

The verdict is the kernel's: the worker returns values, never "passed", and
the expected values of the checks never reach it, so a candidate that
writes a fake verdict, or exits early, cannot make itself pass.

Examples in the intent ("``>>> f(2)`` / ``4``", "``f(2) == 4``", "for example
f(2) returns 4") become checks the trial runs as well; the cycle may add
checks of its own (``source="model"``), which rank candidates but never
decide alone.
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
    source: str = "intent"  # "intent": the Architect's own example; "model": written by the cycle from the intent

    def call(self, selector: str) -> str:
        return f"{selector}({call_text(self.args, self.kwargs)})"


def call_text(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Arguments as they would be written in a call: ``5, base=2``."""
    return ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])


@dataclass
class TrialResult:
    ok: bool
    call: str = ""  # the message as a call, for feedback: add_todo('milk')
    value: str | None = None
    error: str | None = None
    stateful: bool = False  # the candidate keeps state: it was called twice
    second_error: str | None = None  # the second call, with the first call's state, failed
    refused: str | None = None  # the message was refused on purpose, as the intent allows: its answer is this error
    checks: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.ok and self.second_error is None and all(c.get("passed") for c in self.checks)

    @property
    def passed_intent(self) -> bool:
        """Runs cleanly and meets every example of the Architect's (the model's own checks aside)."""
        return self.ok and self.second_error is None and all(c.get("passed") for c in self.checks if c.get("source", "intent") == "intent")

    def feedback(self, source: str | None = None) -> str:
        """What went wrong, as the next prompt shows it: the call, expected and got, and the line that failed."""
        lines = []
        if self.error:
            lines.append(f"Calling {self.call} failed: {_with_line(self.error, source)}")
        if self.second_error:
            lines.append(f"Calling {self.call} a second time, on the state the first call left, failed: {_with_line(self.second_error, source)}")
        for check in self.checks:
            if not check.get("passed") and check.get("source", "intent") == "intent":
                lines.append(f"Example {check['call']} should return {check['expected']}, but it returned {_with_line(str(check.get('got')), source)}")
        return "\n".join(lines)

    def failure_kind(self) -> str:
        """A coarse class of the failure, to notice the same mistake made twice: the exception type, or "wrong result"."""
        error = self.error or self.second_error
        if error:
            return error.split(":", 1)[0]
        return "wrong result" if not self.passed_intent else ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "call": self.call, "value": self.value, "error": self.error, "stateful": self.stateful,
                "second_error": self.second_error, "refused": self.refused, "checks": self.checks, "duration_s": round(self.duration_s, 3)}


_WHERE = re.compile(r"\(line (\d+) of [\w]+\)")


def _with_line(error: str, source: str | None) -> str:
    """The error, with the source line it names quoted: the model sees where, not only that."""
    match = _WHERE.search(error)
    if source is None or match is None:
        return error
    lines = source.splitlines()
    number = int(match.group(1))
    return f"{error}, at `{lines[number - 1].strip()}`" if 0 < number <= len(lines) else error


# -- checks from the intent ------------------------------------------------------

_CALL = r"([A-Za-z_]\w*)\(([^()]*(?:\([^()]*\)[^()]*)*)\)"
_LITERAL = r"(-?[\d.]+(?:e-?\d+)?|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|True|False|None)"
_INLINE = re.compile(_CALL + r"\s*(?:==|->|=>|returns|should return|gives|is|equals)\s*" + _LITERAL)
# a doctest line and the line after it; the call is parsed by Python, not by a
# pattern, so brackets inside string arguments (``>>> balanced('(]')``) are fine
_DOCTEST = re.compile(r"^[ \t]*>>>[ \t]*(.+)\n[ \t]*(.+)", re.MULTILINE)


def _parse_call(args_text: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    try:
        call = ast.parse(f"f({args_text})", mode="eval").body
        assert isinstance(call, ast.Call)
        return tuple(ast.literal_eval(a) for a in call.args), {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (SyntaxError, ValueError, AssertionError, TypeError):
        return None


def _doctest_call(line: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """``name(args)`` or ``obj.name(args)`` with literal arguments, as (args, kwargs)."""
    try:
        call = ast.parse(line.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or not isinstance(call.func, (ast.Name, ast.Attribute)):
        return None
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    try:
        return tuple(ast.literal_eval(a) for a in call.args), {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (ValueError, TypeError, SyntaxError):
        return None


def checks_from_intent(intent: str | None) -> list[Check]:
    """Examples the Architect wrote into the intent, as calls with expected results."""
    if not intent:
        return []
    found: list[Check] = []

    def add(text: str, call: tuple[tuple[Any, ...], dict[str, Any]] | None, expected_text: str) -> None:
        try:
            expected = ast.literal_eval(expected_text.strip().rstrip(".,;"))
        except (SyntaxError, ValueError):
            return
        if call is not None:
            check = Check(text.strip(), call[0], call[1], expected)
            if check not in found:
                found.append(check)

    for match in _DOCTEST.finditer(intent):
        add(match.group(0), _doctest_call(match.group(1)), match.group(2))
    for match in _INLINE.finditer(intent):
        if not any(match.group(0) in c.text for c in found):  # a doctest already read
            _name, args_text, expected_text = match.groups()
            add(match.group(0), _parse_call(args_text), expected_text)
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


def keeps_state(source: str) -> bool:
    """Whether a method writes to its receiver: assigns, deletes or changes in place a slot.

    Read from the source the guardian accepted, so the trial knows to call it
    twice before anyone has watched it run."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)) and _on_self(node):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS and _on_self(node.func.value) \
                and not (isinstance(node.func.value, ast.Name)):
            return True
    return False


# the in-place methods of containers; a call on a value held by self changes the receiver
_MUTATORS = frozenset({"append", "extend", "insert", "remove", "pop", "clear", "update", "setdefault", "popitem", "add",
                       "discard", "sort", "reverse", "appendleft", "popleft", "extendleft", "rotate"})


def raised_types(source: str) -> set[str]:
    """The exception types a method raises on purpose: ``raise ValueError(...)``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name):
                found.add(exc.id)
    return found


# words with which an intent says when its method must refuse ("raise an error if the list is empty")
_REFUSING = frozenset({"error", "errors", "raise", "raises", "raising", "refuse", "refuses", "reject", "rejects",
                       "exception", "fail", "fails"})


def refusal_anticipated(intent: str | None) -> bool:
    """Whether the intent says the method must refuse some requests, so a refusal can be its answer.

    The message that starts a cycle may be one of those (``average_reading()``
    before any reading, ``remove_stock('apple', 10)`` with 8 in stock). A right
    method refuses it, and every candidate that did used to be rejected: three
    attempts, 60-140 s, and a failed cycle for each such bench scenario."""
    return bool(_REFUSING & set(re.findall(r"[a-z]+", (intent or "").lower())))


def deliberate_refusal(exc: MethodFault, source: str) -> bool:
    """Whether *exc* came from a ``raise`` of the method's own, under a condition.

    A raise at the top of the method's body refuses everything: that is a
    method that does not work, not one that refuses this request."""
    line = _WHERE.search(str(exc))
    if exc.exc_type is None or exc.exc_type not in raised_types(source) or line is None:
        return False
    number = int(line.group(1))
    for func in ast.walk(ast.parse(source)):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Raise) and node.lineno == number:
                    return not any(statement is node for statement in func.body)
    return False


def _on_self(node: ast.AST) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"


def run_trial(
    sandbox: MethodRuntime,
    receiver: UvmObject,
    selector: str,
    source: str,
    args: list[Any],
    kwargs: dict[str, Any],
    checks: Sequence[Check] = (),
    limits: MethodLimits | None = None,
    refusal_expected: bool = False,
) -> TrialResult:
    """Inside a (reading) transaction: the candidate's calls and the kernel's verdict.

    With *refusal_expected* (the intent says when to refuse), a message the
    candidate refuses on purpose (:func:`deliberate_refusal`) is answered, not failed.

    Changes are applied in that transaction (so a sequence sees the state its
    earlier calls left) and rolled back to a savepoint after each sequence; a
    receiver that is not in an image yet gets each call's changes discarded.
    """
    record = MethodRecord(selector, source, 0, "trial", None)
    jar = receiver._p_jar
    carry = jar is not None
    started = time.monotonic()

    def call(call_args: Sequence[Any], call_kwargs: Mapping[str, Any]) -> Any:
        return sandbox.run(receiver, receiver, record, list(call_args), dict(call_kwargs), override=source, apply=carry, limits=limits)

    def sequence(run: Any) -> None:
        if not carry:
            run()
            return
        savepoint = jar.transaction_manager.savepoint()
        try:
            run()
        finally:
            savepoint.rollback()

    result = TrialResult(ok=False, call=f"{selector}({call_text(args, kwargs)})", stateful=keeps_state(source))

    def message() -> None:
        try:
            value = call(args, kwargs)
            result.ok, result.value = True, repr(value)[:2000]
        except MethodFault as exc:
            if not (refusal_expected and deliberate_refusal(exc, source)):
                result.error = str(exc)
                return
            result.ok, result.refused = True, str(exc)
        if result.stateful:
            try:
                call(args, kwargs)
            except MethodFault as exc:
                # refusing the same request twice (removing an item twice, overdrawing) is the
                # method doing its job; only a failure it did not raise on purpose is a bug
                if exc.exc_type is None or exc.exc_type not in raised_types(source):
                    result.second_error = str(exc)

    def examples() -> None:
        for check in checks:
            entry: dict[str, Any] = {"text": check.text, "call": check.call(selector), "expected": repr(check.expected), "source": check.source}
            try:
                got = call(check.args, check.kwargs)
                entry["got"], entry["passed"] = repr(got)[:500], same(got, check.expected)
            except MethodFault as exc:
                entry["got"], entry["passed"] = str(exc)[:300], False
            result.checks.append(entry)

    sequence(message)
    if checks:
        sequence(examples)
    result.duration_s = time.monotonic() - started
    return result
