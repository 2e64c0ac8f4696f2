"""The narrow model interface the cycle uses: a prompt in, text out.

:class:`batos.substrate.modelhost.HostedModel` is the product's backend: a GGUF served
by llama-cpp-python (JSON answers grammar-constrained to a schema) or a
Hugging Face model served by transformers (NF4 on CUDA, peft adapters), each
in its own host process. Test doubles (a scripted model) live in
:mod:`batos.testing`, never in the product.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Protocol

from batos.core.errors import BatosError


class ModelError(BatosError):
    """A model that cannot be loaded or cannot answer."""


def json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer; ValueError when there is none.

    Grammar-constrained backends always produce the bare object; others may
    wrap it in prose or fences, so the outermost braces are taken.
    """
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def unit_score(text: str, key: str) -> tuple[float | None, str]:
    """(score, reason) from a JSON answer ``{key: 0..1, "reason": ...}``; (None, why) when it is unusable.

    An answer cut off by its token budget in the middle of the reason still
    carries the score, which the schema puts first: it is kept, and the reason
    is marked as cut, rather than the whole judgement thrown away."""
    try:
        data = json_object(text)
        score = float(data[key])
    except (ValueError, KeyError, TypeError) as exc:
        cut = _cut_off(text, key)
        if cut is None:
            return None, f"unusable answer ({type(exc).__name__}): {text[:80]!r}"
        score, reason = cut
        data = {"reason": f"{reason} (cut off)"}
    if not 0.0 <= score <= 1.0:
        return None, f"{key} {score} outside [0, 1]"
    return score, str(data.get("reason", ""))[:300]


def _cut_off(text: str, key: str) -> tuple[float, str] | None:
    """(score, reason so far) of an object that opens with *key* and ends inside its
    reason string; None for anything else (two objects, a missing key, prose)."""
    opened = re.search(r'\{\s*"%s"\s*:\s*(-?\d+(?:\.\d+)?)\s*,\s*"reason"\s*:\s*"' % re.escape(key), text)
    if opened is None:
        return None
    rest = text[opened.end():]
    if re.search(r'(?<!\\)"', rest):  # the reason string closed: not a cut-off answer
        return None
    try:
        reason = json.loads(f'"{rest}"')
    except ValueError:  # cut inside an escape
        reason = rest
    return float(opened.group(1)), reason


class TextModel(Protocol):
    name: str
    calls: int

    def complete(
        self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
        stop: list[str] | None = None, on_token: Callable[[str], None] | None = None, seed: int | None = None,
        avoid: list[str] | None = None,
    ) -> str:
        """The answer, cut before the first of *stop*; pieces stream to *on_token* as they are generated.

        *seed* fixes the sampling, so a retry asks for a different sample on purpose
        rather than by luck (None: the backend's default). No token that contains one
        of the strings in *avoid* is sampled: for what a prompt cannot stop a small
        model from writing (a copy of the docstring it was given)."""
        ...
