"""Test doubles for BAT OS: deterministic stand-ins for the model and the personas.

Right for fast, exact tests of the cycle and the loops; never what the kernel
runs for the Architect (the product speaks through
:class:`batos.substrate.personas.HostedPersonas`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from batos.core.roster import PERSONAS
from batos.loops.service import Loops
from batos.substrate.llm import ModelError, TextModel
from batos.substrate.personas import Pins, current_pins
from batos.substrate.stops import cut_at_stop


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
        self.requests: list[dict[str, Any]] = []  # the sampling asked for with each prompt
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> "ScriptedModel":
        return cls(json.loads(Path(path).read_text()))

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
                 stop: list[str] | None = None, on_token: Callable[[str], None] | None = None, seed: int | None = None,
                 avoid: list[str] | None = None) -> str:
        self.requests.append({"temperature": temperature, "seed": seed, "stop": list(stop or []), "max_tokens": max_tokens,
                              "avoid": list(avoid or [])})
        text = self._next(system, prompt)
        text, _stopped = cut_at_stop(text, stop or [])
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


class SharedPersonas:
    """Personas speaking through given models: one for all, or one per persona."""

    def __init__(self, models: TextModel | Mapping[str, TextModel]) -> None:
        self.models = dict(models) if isinstance(models, Mapping) else {p: models for p in PERSONAS}
        missing = [p for p in PERSONAS if p not in self.models]
        if missing:
            raise ValueError(f"no model for persona(s) {', '.join(missing)}")

    def pin(self, root: Any) -> Pins:
        pins = current_pins(root)
        return {p: {**pins[p], "speaker": m.name} for p, m in self.models.items()}

    def speaker(self, persona: str, pins: Pins | None = None) -> TextModel:
        return self.models[persona]

    def status(self) -> dict[str, Any]:
        unique = {id(m): m for m in self.models.values()}.values()
        return {"models_loaded": sorted({m.name for m in unique if getattr(m, "loaded", True)}),
                "model_calls": sum(m.calls for m in unique)}


def drain(loops: Loops) -> None:
    """Run every queued slow job now, on the calling thread (tests drive the loops this way)."""
    while not loops._jobs.empty():
        loops.step()
