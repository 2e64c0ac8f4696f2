"""LoRA adapters in the image: import, bind, revert, remove, and the staging directory.

An adapter is a file set like a model (:mod:`batos.substrate.models` stores
both), tied to one transformers base model. A persona's adapter changes are
kept in its ``adapter_history``, so that the strategic loop's swaps, like the
Architect's, can be reverted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from persistent.mapping import PersistentMapping

from batos.core.image import Image
from batos.core.roster import PERSONA_ROOTS
from batos.core.txn import reading, transact
from batos.substrate.models import (
    AdapterRecord, ModelStoreError, adapters, blob_view, check_name, check_personas, pinned_record, registry, store_files,
    switch_adapter, tree_files,
)


def _lora_config(weights: Path) -> dict[str, Any]:
    """A peft LoraConfig for a bare ``.safetensors`` adapter, read off its tensor names and shapes."""
    from safetensors import safe_open

    targets: set[str] = set()
    rank = None
    try:
        with safe_open(str(weights), framework="np") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                parts = key.split(".")
                if "lora_A" in parts:
                    targets.add(parts[parts.index("lora_A") - 1])
                    rank = rank or handle.get_slice(key).get_shape()[0]
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own kinds for a bad header
        raise ModelStoreError(f"{weights}: not a readable safetensors file: {exc}") from exc
    if not targets or not rank:
        raise ModelStoreError(f"{weights}: no lora_A tensors; not a LoRA adapter")
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(rank), "lora_alpha": int(metadata.get("lora_alpha", rank)),
            "target_modules": sorted(targets), "lora_dropout": 0.0, "bias": "none", "base_model_name_or_path": None}


def adapter_files(path: Path, scratch: Path) -> list[tuple[str, Path]]:
    """The files of a peft adapter directory, or of a bare ``.safetensors`` (its config written to *scratch*)."""
    if path.is_dir():
        config = path / "adapter_config.json"
        if not config.is_file():
            raise ModelStoreError(f"{path}: an adapter directory needs an adapter_config.json")
        try:
            if json.loads(config.read_text()).get("peft_type", "LORA") != "LORA":
                raise ModelStoreError(f"{config}: only LoRA adapters are supported")
        except ValueError as exc:
            raise ModelStoreError(f"{config}: not JSON ({exc})") from exc
        files = [(rel, p) for rel, p in tree_files(path) if rel == "adapter_config.json" or rel.startswith("adapter_model")]
        if len(files) < 2:
            raise ModelStoreError(f"{path}: no adapter_model.safetensors (or .bin) beside the config")
        return files
    if path.is_file() and path.suffix == ".safetensors":
        config = scratch / "adapter_config.json"
        config.write_text(json.dumps(_lora_config(path)))
        return [("adapter_config.json", config), ("adapter_model.safetensors", path)]
    raise ModelStoreError(f"{path}: not an adapter directory or .safetensors file")


def import_adapter(image: Image, path: Path, name: str, base: str, personas: Sequence[str] = (), origin: str = "imported",
                   metrics: dict[str, Any] | None = None, reason: str = "imported",
                   also: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Store a LoRA adapter as blobs for model *base*; binding personas (and *also*, given the root)
    is part of the same transaction, so the swap is all or nothing."""
    check_name(name, "adapter")
    check_personas(personas)
    with tempfile.TemporaryDirectory(dir=image.db.storage.temporaryDirectory()) as scratch:
        files = adapter_files(path, Path(scratch))

        def register(root: Any, stored: PersistentMapping) -> dict[str, Any]:
            record_base = registry(root).get(base)
            if record_base is None:
                raise ModelStoreError(f"no model named {base!r} to be the adapter's base")
            if record_base.backend != "transformers":
                raise ModelStoreError(f"{base!r} is a {record_base.backend} model; LoRA adapters need a transformers base")
            if name in adapters(root):
                raise ModelStoreError(f"an adapter named {name!r} exists; remove it first")
            record = AdapterRecord(name, base, str(path), origin)
            record.files.update(stored)
            record.metrics.update(metrics or {})
            adapters(root)[name] = record
            for persona in personas:
                bind_adapter_in(root, persona, name, reason)
            if also is not None:
                also(root)
            return record.summary(adapter_personas(root, name))

        return store_files(image, files, None, register, f"adapters: import {name}")


def adapter_personas(root: Any, name: str) -> list[str]:
    return [p for p, r in PERSONA_ROOTS.items() if root[r].adapter == name]


def bind_adapter_in(root: Any, persona: str, name: str | None, reason: str) -> None:
    """Inside a transaction: switch *persona* to adapter *name* (None: the bare base), keeping the old one in history."""
    check_personas([persona])
    obj = root[PERSONA_ROOTS[persona.upper()]]
    if name is not None:
        record = adapters(root).get(name)
        if record is None:
            raise ModelStoreError(f"no adapter named {name!r}")
        if record.base != obj.model:
            raise ModelStoreError(f"{name!r} adapts {record.base!r}, but {persona.upper()} uses {obj.model!r}")
    if obj.adapter != name:
        switch_adapter(obj, name, reason)


def bind_adapter(image: Image, persona: str, name: str | None, reason: str = "bound by the Architect") -> None:
    transact(image.db, lambda root: bind_adapter_in(root, persona, name, reason), note=f"adapters: bind {persona} {name}")


def revert_adapter(image: Image, persona: str) -> str | None:
    """Restore the adapter *persona* had before its latest change (one transaction); return it."""
    check_personas([persona])

    def work(root: Any) -> str | None:
        obj = root[PERSONA_ROOTS[persona.upper()]]
        if not obj.adapter_history:
            raise ModelStoreError(f"{persona.upper()} has no earlier adapter to revert to")
        previous = obj.adapter_history.pop()["adapter"]
        if previous is not None and (previous not in adapters(root) or adapters(root)[previous].base != obj.model):
            raise ModelStoreError(f"{persona.upper()}'s earlier adapter {previous!r} is gone or adapts another model")
        obj.adapter = previous
        return previous

    return transact(image.db, work, note=f"adapters: revert {persona}")


def list_adapters(image: Image) -> list[dict[str, Any]]:
    with reading(image.db) as root:
        return [record.summary(adapter_personas(root, record.name)) for record in adapters(root).values()]


def remove_adapter(image: Image, name: str) -> None:
    def work(root: Any) -> None:
        if name not in adapters(root):
            raise ModelStoreError(f"no adapter named {name!r}")
        bound = adapter_personas(root, name)
        if bound:
            raise ModelStoreError(f"{name!r} is bound to {', '.join(bound)}; bind them to another adapter first")
        del adapters(root)[name]

    transact(image.db, work, note=f"adapters: remove {name}")


def stage_adapters(image: Image, staging: Path, base: str | None) -> tuple[list[str], list[str]]:
    """Import every adapter in the staging directory that the image lacks (kernel start, `adapters import`).

    An entry may carry a ``batos.json`` ({"base": ..., "personas": [...]}) naming
    its base model and personas; otherwise *base* is used and nothing is bound.
    Each entry is its own transaction: a bad one is skipped with its reason
    (returned second) and the others still go in.
    """
    if not staging.is_dir():
        return [], []
    with reading(image.db) as root:
        present = set(adapters(root).keys())
    imported: list[str] = []
    skipped: list[str] = []
    for entry in sorted(staging.iterdir()):
        if entry.name.startswith(".") or not (entry.is_dir() or entry.suffix == ".safetensors"):
            continue
        name = entry.stem if entry.is_file() else entry.name
        if name in present:
            continue
        try:
            manifest_file = entry / "batos.json"
            try:
                manifest = json.loads(manifest_file.read_text()) if entry.is_dir() and manifest_file.is_file() else {}
            except ValueError as exc:
                raise ModelStoreError(f"{manifest_file}: not JSON ({exc})") from exc
            target = manifest.get("base", base)
            if target is None:
                raise ModelStoreError(f"{entry}: no base model named (give --base, or a batos.json with \"base\")")
            import_adapter(image, entry, name, target, list(manifest.get("personas", [])), reason=f"staged in {staging.name}/")
        except ModelStoreError as exc:
            skipped.append(str(exc))
            continue
        imported.append(name)
    return imported, skipped


def locate_adapter_in(root: Any, name: str, version: str | None = None) -> dict[str, str]:
    """Inside a read: the adapter as a host loads it ({"name", "path"}); *version*, when given, must be current."""
    record = pinned_record(adapters(root), "adapter", name, version)
    return {"name": f"{name}-{record.version}", "path": str(blob_view("adapter", name, record.version, record.files))}
