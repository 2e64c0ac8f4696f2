"""Checks the model writes from the intent, before it has seen any candidate.

CodeT's observation: a model's own tests are noisy one by one, but a
candidate that agrees with them, and with other candidates on them, is more
often right than one chosen at random. So the cycle asks for a few
``assert f(...) == ...`` lines written from the intent alone (the prompt holds
no candidate, so the checks cannot be bent to fit one), keeps those that parse
as literal calls, and drops any that contradicts one of the Architect's own
examples. They rank candidates; they never reject one by themselves, because
a wrong check is as likely as a wrong method.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from batos.sandbox.trial import Check, same

CHECK_STOPS = ["\n```\n", "\n\n\n"]


def checks_prompt(selector: str, signature: str, intent: str, examples: Sequence[Check], count: int) -> str:
    shown = "\n".join(f"assert {c.call(selector)} == {c.expected!r}" for c in examples[:3])
    return (
        f"Write {count} test lines for the function {signature}, which should do this:\n{intent or '(infer it from the name)'}\n\n"
        + (f"Tests already known to be right:\n{shown}\n\n" if shown else "")
        + f"Write {count} new ones, one per line, exactly in the form `assert {selector}(ARGUMENTS) == EXPECTED`, "
        "with literal values only (numbers, strings, lists, dicts, True/False/None), covering ordinary and edge cases. "
        "Work out each expected value carefully. Answer with the lines only, in one ```python block."
    )


@dataclass(frozen=True)
class ParsedChecks:
    kept: list[Check]
    dropped: list[tuple[str, str]]  # (line, why)


def parse_checks(text: str, selector: str, examples: Sequence[Check], limit: int, message_args: int) -> ParsedChecks:
    """The model's assert lines as :class:`Check`\\ s (``source="model"``), and the lines dropped with why.

    A check must call the method with as many positional arguments as the message that
    started the cycle, or as one of the intent's own examples: those are the call shapes
    known to be right. Asked for checks of ``average_reading()``, a method of no arguments
    whose answer is the object's state, the model wrote ``average_reading([1, 2, 3]) == 2.0``;
    every candidate then "failed" every check, and the ranking was noise."""
    arities = {message_args, *(len(e.args) for e in examples)}
    kept: list[Check] = []
    dropped: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("assert "):
            continue
        check, why = _parse(line, selector)
        if check is None:
            dropped.append((line, why))
            continue
        clash = next((e for e in examples if e.args == check.args and e.kwargs == check.kwargs and not same(check.expected, e.expected)), None)
        if len(check.args) not in arities:
            shapes = " or ".join(str(n) for n in sorted(arities))
            dropped.append((line, f"passes {len(check.args)} argument(s); the method is called with {shapes}"))
        elif clash is not None:
            dropped.append((line, f"contradicts the intent's example {clash.call(selector)} == {clash.expected!r}"))
        elif any(k.args == check.args and k.kwargs == check.kwargs for k in [*examples, *kept]):
            dropped.append((line, "repeats a call already checked"))
        elif len(kept) >= limit:
            dropped.append((line, f"more than {limit} checks"))
        else:
            kept.append(check)
    return ParsedChecks(kept, dropped)


def _parse(line: str, selector: str) -> tuple[Check | None, str]:
    try:
        node = ast.parse(line).body[0]
    except SyntaxError as exc:
        return None, f"not Python: {exc.msg}"
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
            and isinstance(node.test.ops[0], ast.Eq)):
        return None, "not of the form assert CALL == EXPECTED"
    call, expected = node.test.left, node.test.comparators[0]
    if not (isinstance(call, ast.Call) and isinstance(call.func, (ast.Name, ast.Attribute))):
        return None, "the left side is not a call"
    name = call.func.id if isinstance(call.func, ast.Name) else call.func.attr
    if name != selector:
        return None, f"calls {name}, not {selector}"
    try:
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
        value = ast.literal_eval(expected)
    except (ValueError, SyntaxError, TypeError):
        return None, "not literal values"
    if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        return None, "not literal values"
    return Check(line, args, kwargs, value, source="model"), ""
