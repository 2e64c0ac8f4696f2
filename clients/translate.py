"""Natural language to a mission brief (target, selector, args, intent).

The Architect may type "create a method to report the current system time"
instead of a message. The embedded model translates it, with its output
constrained by a grammar generated from the brief's JSON schema, so it can
only produce a well-formed brief. When no model is available (or its answer
still fails validation) a deterministic rule parser does the job, so the
console always works.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SELECTOR_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
DEFAULT_TARGET = "genesis"


class MissionBrief(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=64)
    selector: str = Field(pattern=SELECTOR_PATTERN)
    args: list[Any] = Field(default_factory=list, max_length=16)
    intent: str = Field(min_length=1, max_length=2000)
    translated_by: str = "rules"


class Translator(Protocol):
    def translate(self, text: str, roots: list[str]) -> MissionBrief: ...


STOPWORDS = frozenset(
    "a an the to that which who me my our for of with and or please can you could would will should "
    "create make write add define build teach learn new method function skill capability so it returns "
    "return gives give called named is be".split()
)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
# a value the Architect wrote: quoted text ("buy milk", 'Ada') or a number
_VALUE = re.compile(r"\"([^\"]+)\"|(?<![\w])'([^']+)'(?![\w])|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


def mentioned_values(text: str) -> list[Any]:
    """The concrete values in a request, in order: quoted strings and numbers.

    These are the message's arguments: "add 'buy milk' to my todo list" is
    add_todo("buy milk"), not add_todo() with the item lost."""
    values: list[Any] = []
    for double, single, number in _VALUE.findall(text):
        values.append(json.loads(number) if number else (double or single))
    return values


def keep_arguments(brief: MissionBrief, text: str) -> MissionBrief:
    """Add every value the request mentions that the brief's args lost, in the request's order."""
    missing = [v for v in mentioned_values(text) if v not in brief.args and str(v) not in map(str, brief.args)]
    if not missing:
        return brief
    return brief.model_copy(update={"args": [*brief.args, *missing][:16]})


def pasted_brief(text: str) -> MissionBrief | None:
    """A function pasted as a specification, as a brief without asking a model.

    ``def name(params): \"\"\"... >>> name(args) ...\"\"\"`` is a message to genesis:
    the selector is the function's name, the arguments those of its first
    docstring example, and the intent the whole text (the cycle recognises it as
    a specification). The model translator made the docstring an argument and
    dropped the ``def`` line. None when the text is not one such function (one
    with ``self`` is a method, and not this) or has no example whose arguments
    are literals, so the Architect gets the usual translation. The kernel's own
    example parser (``checks_from_intent``) is behind the wire, which a client
    may not cross, so the first literal call is read here.
    """
    try:
        module = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return None
    functions = [n for n in module.body if isinstance(n, ast.FunctionDef)]
    others = [n for n in module.body if not isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
    if len(functions) != 1 or others:
        return None
    function = functions[0]
    positional = [a.arg for a in function.args.posonlyargs + function.args.args]
    if positional[:1] == ["self"] or not re.match(SELECTOR_PATTERN, function.name) or len(text.strip()) > 2000:
        return None
    for line in (ast.get_docstring(function) or "").splitlines():
        example = line.strip().removeprefix(">>>").strip() if line.strip().startswith(">>>") else ""
        try:
            call = ast.parse(example, mode="eval").body if example else None
        except SyntaxError:
            continue
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == function.name) or call.keywords:
            continue
        try:
            args = [ast.literal_eval(a) for a in call.args]
        except ValueError:
            continue
        return MissionBrief(target=DEFAULT_TARGET, selector=function.name, args=args, intent=text.strip(), translated_by="pasted function")
    return None


def snake_case(words: list[str]) -> str:
    return "_".join(w.lower() for w in words if w)


class RuleTranslator:
    """Deterministic: target = a root name mentioned (else genesis); selector = an
    explicit "called X" name, else the key words of the request; args = numbers."""

    def translate(self, text: str, roots: list[str]) -> MissionBrief:
        pasted = pasted_brief(text)
        if pasted is not None:
            return pasted
        lowered = text.strip()
        words = re.findall(r"[A-Za-z][A-Za-z0-9]*", lowered)
        target = next((w for w in words if w in roots), DEFAULT_TARGET)
        named = re.search(r"\b(?:called|named)\s+`?([A-Za-z_][A-Za-z0-9_]*)`?", lowered)
        if named:
            selector = re.sub(r"(?<!^)(?=[A-Z])", "_", named.group(1)).lower().strip("_")
        else:
            keep = [w for w in words if w.lower() not in STOPWORDS and w != target][:4]
            selector = snake_case(keep) or "do_it"
        if not re.match(SELECTOR_PATTERN, selector):
            selector = "m_" + re.sub(r"[^a-z0-9_]", "", selector)[:40]
        return MissionBrief(target=target, selector=selector, args=mentioned_values(lowered), intent=lowered)


SYSTEM_PROMPT = (
    "You translate the Architect's request into a mission brief for a living object system. "
    "Answer with JSON: target (the object that should learn or answer: {default}, unless the request "
    "explicitly names another of: {roots}), "
    "selector (a short snake_case method name), args (every concrete value the request mentions: quoted text, "
    "names, numbers; as a JSON list, empty only when it mentions none), intent (what the method must do with "
    "its arguments, in one sentence; say what each argument is)."
)


class ModelTranslator:
    """The embedded GGUF model through llama-cpp-python, grammar-constrained."""

    def __init__(self, model_path: Path, *, threads: int = 2) -> None:
        from llama_cpp import Llama  # imported here: the console works without it

        self.model_path = model_path
        self.llm = Llama(model_path=str(model_path), n_ctx=2048, n_threads=threads, verbose=False)
        self.fallback = RuleTranslator()

    def translate(self, text: str, roots: list[str]) -> MissionBrief:
        pasted = pasted_brief(text)
        if pasted is not None:  # exact, and no model call
            return pasted
        # The default first: small models lean towards the first choice offered.
        targets = [DEFAULT_TARGET] + [r for r in roots if r != DEFAULT_TARGET]
        schema = {
            "type": "object",
            "properties": {
                "target": {"type": "string", "enum": targets},
                "selector": {"type": "string", "pattern": SELECTOR_PATTERN},
                "args": {"type": "array"},
                "intent": {"type": "string"},
            },
            "required": ["target", "selector", "args", "intent"],
        }
        answer = self.llm.create_chat_completion(
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT.format(roots=", ".join(targets), default=DEFAULT_TARGET)},
                {"role": "user", "content": text},
            ],
            response_format={"type": "json_object", "schema": schema},
            temperature=0.0,
            max_tokens=200,
        )
        content = answer["choices"][0]["message"]["content"]
        try:
            return keep_arguments(MissionBrief(**json.loads(content), translated_by="model"), text)
        except (ValueError, TypeError, ValidationError):
            return self.fallback.translate(text, roots)
