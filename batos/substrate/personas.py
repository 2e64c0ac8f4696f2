"""Personas speak through models: the cycle asks for a persona, never a model.

A persona's binding (``model``, ``adapter``) lives on its prototype in the
image. When a cycle starts it *pins* every persona's binding — model name and
content version, adapter name and version — and every later step speaks
through exactly that pin, so an import, a new adapter or a revert made while
the cycle runs changes the next cycle, not this one.

:class:`HostedPersonas` is the product: pins resolve to the models' committed
blobs, served by the :class:`~batos.substrate.modelhost.ModelPool` (personas bound to
the same base share one host; their adapters are switched on it).
Tests make every persona speak through a scripted model with
:class:`batos.testing.SharedPersonas`.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from batos.core.roster import PERSONA_ROOTS
from batos.core.txn import reading
from batos.substrate.adapters import locate_adapter_in
from batos.substrate.llm import ModelError, TextModel
from batos.substrate.modelhost import HostedModel, ModelPool
from batos.substrate.models import ModelStoreError, adapters, locate_in, registry

Pins = dict[str, dict[str, Any]]


class Personas(Protocol):
    def pin(self, root: Any) -> Pins:
        """Every persona's current binding, to be stored with a cycle (inside its transaction)."""
        ...

    def speaker(self, persona: str, pins: Pins | None = None) -> TextModel:
        """The model *persona* speaks through under *pins* (its current binding when None)."""
        ...

    def status(self) -> dict[str, Any]:
        ...


def system_prompt(root: Any, persona: str) -> str:
    """The persona's codex as a system prompt, read fresh: an approved amendment applies to the next call."""
    return str(root[PERSONA_ROOTS[persona]].system_prompt())


def current_pins(root: Any) -> Pins:
    pins: Pins = {}
    for persona, slot in PERSONA_ROOTS.items():
        obj = root[slot]
        record = registry(root).get(obj.model)
        adapter = adapters(root).get(obj.adapter) if obj.adapter else None
        pins[persona] = {
            "model": obj.model, "version": record.version if record else None, "backend": record.backend if record else None,
            "adapter": obj.adapter, "adapter_version": adapter.version if adapter else None,
        }
    return pins


class HostedPersonas:
    """The kernel's personas: bindings from the image, models from their blobs, hosted by the pool."""

    def __init__(self, db: Any, pool: ModelPool) -> None:
        self.db = db
        self.pool = pool
        self._speakers: dict[tuple[Any, ...], HostedModel] = {}
        self._lock = threading.Lock()

    def pin(self, root: Any) -> Pins:
        return current_pins(root)

    def speaker(self, persona: str, pins: Pins | None = None) -> TextModel:
        if pins is None or persona not in pins:
            with reading(self.db) as root:
                pins = current_pins(root)
        pin = pins[persona]
        key = (pin["model"], pin["version"], pin["adapter"], pin["adapter_version"])
        with self._lock:
            speaker = self._speakers.get(key)
        if speaker is not None:
            return speaker
        try:
            with reading(self.db) as root:
                location = locate_in(root, pin["model"], pin["version"])
                adapter = locate_adapter_in(root, pin["adapter"], pin["adapter_version"]) if pin["adapter"] else None
        except ModelStoreError as exc:
            raise ModelError(f"{persona}'s pinned model is not available: {exc}") from exc
        speaker = HostedModel(self.pool, location.name, location.path, location.backend,
                              key=f"{location.name}@{location.version}", adapter=adapter)
        with self._lock:
            return self._speakers.setdefault(key, speaker)

    def status(self) -> dict[str, Any]:
        with self._lock:
            calls = sum(s.calls for s in self._speakers.values())
        return {"models_loaded": self.pool.loaded(), "model_calls": calls}
