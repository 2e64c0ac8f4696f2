"""The narrow model interface the cycle uses: a prompt in, text out.

:class:`LlamaCppModel` is the product's backend (the embedded GGUF through
llama-cpp-python, optionally grammar-constrained to a JSON schema).
:class:`ScriptedModel` replays recorded outputs for deterministic tests of
the cycle; it is never what the kernel runs for the Architect.
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


class TextModel(Protocol):
    name: str
    calls: int

    def complete(
        self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None
    ) -> str: ...


class LlamaCppModel:
    """A GGUF model loaded lazily, once, and used by one caller at a time.

    llama.cpp contexts are not thread-safe; a lock serialises completions
    (the kernel's worker threads may run several cycles).
    """

    def __init__(self, path: Path, name: str, *, n_ctx: int = 4096, threads: int | None = None) -> None:
        self.path = path
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads
        self.calls = 0
        self._llm: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _load(self) -> Any:
        if self._llm is None:
            if not self.path.is_file():
                raise ModelError(f"model file missing: {self.path}")
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ModelError(f"llama-cpp-python is not installed ({exc}); run ./puter.sh setup") from None
            try:
                self._llm = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False)
            except ValueError as exc:  # llama.cpp's answer to a corrupt or foreign file
                raise ModelError(f"cannot load {self.path}: {exc}") from None
        return self._llm

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None) -> str:
        with self._lock:
            llm = self._load()
            kwargs: dict[str, Any] = {}
            if json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
            answer = llm.create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=temperature,
                **kwargs,
            )
            self.calls += 1
            return answer["choices"][0]["message"]["content"] or ""


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

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None) -> str:
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
