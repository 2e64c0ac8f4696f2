"""What the cycle asks BRICK: the method itself (and, in :mod:`~batos.cognition.checks`, checks).

Kept apart from the engine so the wording can be read, and tuned, in one place.

The code prompt starts with :data:`OBJECT_PROTOCOL`, which never changes, and
ends with what does (the object, the message, the feedback): the model host
reuses the evaluated prefix of the previous prompt, so the persona's system
prompt and the protocol are evaluated once, not on every candidate.
"""

from __future__ import annotations

import re

from batos.cognition.step import StepInput

# no token containing triple quotes: told not to, the 1.5B model still copied a pasted specification's
# docstring, doctests and all, into every candidate (measured: 133 tokens -> 77 for running_max,
# 28 s -> 17 s). It no longer does; a model could still spell them from smaller tokens.
CODE_AVOID = ['"""', "'''"]

# the model's answer ends with its code: a closing fence, or what models add after the method
# (only at column 0, so never inside the method; "# Example usage", not "# Example", which may open the block)
CODE_STOPS = ["\n```\n", "\nif __name__", "\n# Example usage", "\n# Test the", "\n# Testing", "\nprint("]

OBJECT_PROTOCOL = """\
You write methods for living objects: Python objects that keep their slots across calls and restarts.
How a method works with its object:
- It is a function whose first parameter is `self`, the object. Read a slot as self.<slot>.
  A slot that was never set does not exist: reading it raises AttributeError.
- Assigning self.<slot> = value creates or replaces the slot; the object keeps it.
- A method whose answer follows from its arguments alone uses no slots and no self._p_changed.
- Only a method that must remember something between calls keeps it in a slot; when the object
  may not have that slot yet, the method creates it on first use, like this:
      if not hasattr(self, "entries"):
          self.entries = []
- After changing a list or dict held in a slot in place (append, remove, item assignment, update),
  write `self._p_changed = True` before returning.
- Call the object's other methods as self.<name>(...). To refuse a request, raise ValueError("why").
- Return the value asked for; do not print it.
Rules: standard library only, imported at the top (math, datetime, json, re, collections, itertools,
functools, statistics, string, random, hashlib, time, decimal, fractions, textwrap); no os, sys, files
or network; no eval, exec, open, global or nonlocal; getattr/hasattr only with a quoted slot name;
no names starting with an underscore except `self._p_changed = True`.
If the intent is a function's specification (def name(params): with a docstring), write that function
as the method: the same parameters after self, behaving exactly as its examples show.
Answer with the code only, in one ```python block: no docstring, no comments, no examples (they cost time)."""


def pasted_function(intent: str | None, selector: str) -> bool:
    """Whether the intent is a function pasted as people write specifications:
    ``def <selector>(params)`` whose first parameter is not ``self``."""
    found = re.search(rf"(?m)^[ \t]*def[ \t]+{re.escape(selector)}[ \t]*\([ \t]*([A-Za-z_]\w*)?", intent or "")
    return found is not None and found.group(1) != "self"


def spec_prompt(step: StepInput, strategy: str) -> str:
    """The prompt for a pasted function: the function, to complete, and nothing else.

    Measured on the 33 bench specifications, first candidate at temperature 0.1
    (hidden tests): with the object protocol, the object and the message around
    it, 14 met their docstring's examples and 10 passed; asked this way, 23 and
    17, in 9.9 s instead of 13.5 s (median). A pasted function keeps no state, so
    nothing the protocol says applies to it; the repairs give it its ``self``."""
    parts = [f"Complete this Python function:\n\n{(step.intent or '').strip()}"]
    parts += _feedback(step, strategy, "function")
    parts.append("Answer with the code only.")
    return "\n\n".join(parts)


def code_prompt(step: StepInput, strategy: str) -> str:
    """The prompt for one candidate. *strategy* "feedback" shows the last rejected
    candidate and why, "problems" only why; "first" and "fresh" (a new start
    after the same failure twice) neither. The cycle asks :func:`spec_prompt` for a pasted function instead."""
    receiver = step.receiver
    slots = "\n".join(f"  {k}: {v}" for k, v in receiver["slots"].items()) or "  (none yet)"
    methods = "\n".join(f"  self.{summary}" for summary in receiver["methods"].values()) or "  (none)"
    parts = [
        OBJECT_PROTOCOL,
        f"The object: {step.target_name}\nIts slots:\n{slots}\nIts methods:\n{methods}",
    ]
    if step.context:
        examples = "\n\n".join(_snippet(c) for c in step.context)
        parts.append(f"Related methods and notes already in the system (reuse their ideas):\n{examples}")
    parts.append(
        f"The message to answer: {step.target_name}.{step.selector}({step.call})"
        f" -- {len(step.args)} positional argument(s){', keywords ' + ', '.join(step.kwargs) if step.kwargs else ''}.\n"
        f"Intent: {step.intent or '(none given; infer it from the name)'}"
    )
    parts += _feedback(step, strategy, "method")
    parts.append(f"Write the method `{step.selector}` now.")
    return "\n\n".join(parts)


def _feedback(step: StepInput, strategy: str, what: str) -> list[str]:
    """The last rejection: "feedback" shows the rejected code and its problems; "problems"
    only the problems, for a resample after the model wrote its rejected code out again
    (shown its code, the 1.5B model copies it: the bench's add_to_cart came back
    identical at temperatures 0.6, 0.8 and 1.0)."""
    if not step.feedback:
        return []
    if strategy == "feedback":
        return [f"Your previous attempt was rejected:\n```python\n{step.previous.strip()}\n```\nProblems:\n{step.feedback}\n"
                f"Fix them: write the {what} again, corrected."]
    if strategy == "problems":
        return [f"Your previous attempt was rejected. Its problems:\n{step.feedback}\nWrite the {what} again, another way, without them."]
    return []


SNIPPET_CHARS = 600  # a related method's source is evaluated on every candidate: its head is enough


def _snippet(context: dict[str, str]) -> str:
    text = context["source"].strip()
    if len(text) > SNIPPET_CHARS:
        text = text[:SNIPPET_CHARS].rstrip() + "\n..."
    if context["kind"] == "memory":
        return f"# note: {context['owner']}\n" + "\n".join(f"# {line}" for line in text.splitlines())
    return f"# {context['owner']}.{context['selector']}\n{text}"
