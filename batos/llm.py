"""The narrow model interface the cycle uses: a prompt in, text out.

:class:`batos.modelhost.HostedModel` is the product's backend: a GGUF served
by llama-cpp-python (JSON answers grammar-constrained to a schema) or a
Hugging Face model served by transformers (NF4 on CUDA, peft adapters), each
in its own host process. :class:`ScriptedModel` replays recorded outputs for
deterministic tests of the cycle; it is never what the kernel runs for the
Architect.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from .errors import BatosError


class ModelError(BatosError):
    """A model that cannot be loaded or cannot answer."""


def unit_score(text: str, key: str) -> tuple[float | None, str]:
    """(score, reason) from a JSON answer ``{key: 0..1, "reason": ...}``; (None, why) when it is unusable.

    Grammar-constrained backends always produce the object; others may wrap it
    in prose, so the outermost braces are taken.
    """
    try:
        data = json.loads(text[text.index("{"): text.rindex("}") + 1])
        score = float(data[key])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"unusable answer ({type(exc).__name__}): {text[:80]!r}"
    if not 0.0 <= score <= 1.0:
        return None, f"{key} {score} outside [0, 1]"
    return score, str(data.get("reason", ""))[:300]


class TextModel(Protocol):
    name: str
    calls: int

    def complete(
        self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
        stop: list[str] | None = None, on_token: Callable[[str], None] | None = None,
    ) -> str:
        """The answer, cut before the first of *stop*; pieces stream to *on_token* as they are generated."""
        ...


class ScriptedModel:
    """Replays outputs in order: each a string, or ``{"text": ..., "delay": s}``.

    A callable script gets ``(system, prompt)`` and returns the text. Every
    prompt is recorded in ``prompts`` so tests can assert what the cycle asked.
    """

    def __init__(self, script: list[Any] | Callable[[str, str], str], name: str = "scripted") -> None:
        self.script = script
        self.name = name
        self.calls = 0
        self.prompts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> "ScriptedModel":
        return cls(json.loads(Path(path).read_text()))

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
                 stop: list[str] | None = None, on_token: Callable[[str], None] | None = None) -> str:
        text = self._next(system, prompt)
        hits = [text.index(s) for s in stop or [] if s and s in text]
        text = text[: min(hits)] if hits else text
        if on_token is not None:
            pieces = text.split(" ")  # word pieces, like a tokenizer's, so streaming is exercised
            for i, piece in enumerate(pieces):
                on_token(piece + (" " if i < len(pieces) - 1 else ""))
        return text

    def _next(self, system: str, prompt: str) -> str:
        with self._lock:
            self.prompts.append((system, prompt))
            index = self.calls
            self.calls += 1
        if callable(self.script):
            return self.script(system, prompt)
        if index >= len(self.script):
            raise ModelError(f"scripted model has no output number {index + 1}")
        entry = self.script[index]
        if isinstance(entry, dict):
            time.sleep(float(entry.get("delay", 0)))
            return str(entry["text"])
        return str(entry)
