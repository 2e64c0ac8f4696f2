"""Models in the image: one ZODB blob per model file, and a registry object.

A model is imported file by file: each file is streamed into the blob
storage's own temporary directory while it is hashed (on disk, never held in
memory), then handed to ``Blob.consumeFile``, which renames it into place — so
the only copy is the one the image must own. Loading reads the committed blob
file where it lies: no tar archive, no extraction to a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from BTrees.OOBTree import OOBTree
from persistent import Persistent
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from batos.core.roster import PERSONA_ROOTS
from batos.core.errors import BatosError
from batos.core.image import Image
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

CHUNK = 8 << 20
EMBEDDED_NAME = "embedded-default"


class ModelStoreError(BatosError):
    """A model that cannot be imported, found or removed."""


class ModelFile(Persistent):
    def __init__(self, name: str, size: int, sha256: str, blob: Blob) -> None:
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.blob = blob


def _version(files: Any) -> str:
    """One digest for a set of files: what a cycle pins, so a re-import under the same name is a new version."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}:{files[rel].sha256}\n".encode())
    return digest.hexdigest()[:16]


class _Files(Persistent):
    """A set of files stored as blobs (``self.files``: name -> ModelFile)."""

    files: PersistentMapping

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def version(self) -> str:
        return _version(self.files)


class ModelRecord(_Files):
    def __init__(self, name: str, backend: str, source: str, main: str) -> None:
        self.name = name
        self.backend = backend  # "llama.cpp" (a GGUF file) or "transformers" (a model directory)
        self.source = source
        self.main = main  # the file a backend opens (the GGUF, or config.json for a directory)
        self.files = PersistentMapping()
        self.created_at = time.time()

    def summary(self, personas: list[str]) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "files": len(self.files), "size": self.size, "version": self.version,
                "sha256": {n: f.sha256 for n, f in self.files.items()}, "personas": personas, "source": self.source}


class AdapterRecord(_Files):
    """A LoRA adapter (peft layout: adapter_config.json + weights), one blob per file, for one base model."""

    def __init__(self, name: str, base: str, source: str, origin: str) -> None:
        self.name = name
        self.base = base
        self.source = source
        self.origin = origin  # "imported" or "trained"
        self.files = PersistentMapping()
        self.metrics: PersistentMapping = PersistentMapping()
        self.created_at = time.time()

    def summary(self, personas: list[str]) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "origin": self.origin, "files": sorted(self.files), "size": self.size,
                "version": self.version, "personas": personas, "metrics": dict(self.metrics), "source": self.source}


def registry(root: Any) -> OOBTree:
    return root["models"].entries


def adapters(root: Any) -> OOBTree:
    return root["models"].adapters


def _check_name(name: str, what: str = "model") -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelStoreError(f"invalid {what} name {name!r} (letters, digits, '-', '_', '.')")


def _check_personas(personas: Sequence[str]) -> None:
    unknown = [p for p in personas if p.upper() not in PERSONA_ROOTS]
    if unknown:
        raise ModelStoreError(f"unknown persona(s) {', '.join(unknown)}; known: {', '.join(PERSONA_ROOTS)}")


def _tree(path: Path) -> list[tuple[str, Path]]:
    """(relative name, file) for every non-hidden file under a directory."""
    return sorted((str(p.relative_to(path)), p) for p in path.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def backend_of(path: Path) -> tuple[str, list[Path], str]:
    """(backend, files, main file) for a GGUF file or a Hugging Face model directory."""
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelStoreError(f"{path}: a model file must be a .gguf (or give a model directory)")
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelStoreError(f"{path}: not a GGUF file (bad magic)")
        return "llama.cpp", [path], path.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelStoreError(f"{path}: a model directory needs a config.json")
        return "transformers", [p for _rel, p in _tree(path)], "config.json"
    raise ModelStoreError(f"{path}: no such file or directory")


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF into a transformers model directory (safetensors), for the transformers backend."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a bad file
        raise ModelStoreError(f"{gguf}: transformers cannot convert it: {type(exc).__name__}: {exc}") from exc
    # the weights are dequantised on load; transformers 5 still marks the model "gguf-quantised"
    # and refuses to save it, so drop that mark (the saved tensors are plain floats)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _stage(source: Path, directory: str, progress: Callable[[int], None] | None) -> tuple[str, int, str]:
    """Copy *source* into the blob storage's temp dir while hashing; return (path, size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    handle, staged = tempfile.mkstemp(dir=directory, prefix="import-")
    with os.fdopen(handle, "wb") as out, open(source, "rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return staged, size, digest.hexdigest()


def _store(image: Image, files: list[tuple[str, Path]], progress: Callable[[int], None] | None,
           register: Callable[[Any, PersistentMapping], dict[str, Any]], note: str) -> dict[str, Any]:
    """Stage *files* next to the blob storage, then consume them as blobs and *register* them in one transaction."""
    temp_dir = image.db.storage.temporaryDirectory()
    staged: list[tuple[str, str, int, str]] = []
    try:
        for rel, file in files:
            staged_path, size, sha = _stage(file, temp_dir, progress)
            staged.append((rel, staged_path, size, sha))

        def work(root: Any) -> dict[str, Any]:
            stored = PersistentMapping()
            for rel, staged_path, size, sha in staged:
                blob = Blob()
                blob.consumeFile(staged_path)  # a rename, not a copy
                stored[rel] = ModelFile(rel, size, sha, blob)
            return register(root, stored)

        return transact(image.db, work, attempts=1, note=note)
    finally:
        for _rel, staged_path, _size, _sha in staged:
            if os.path.exists(staged_path):  # left over when the import failed
                os.unlink(staged_path)


def import_model(image: Image, path: Path, name: str, personas: Sequence[str] = (), progress: Callable[[int], None] | None = None,
                 backend: str | None = None) -> dict[str, Any]:
    """Store a model's files as blobs and register it (one transaction); bind personas.

    ``backend="transformers"`` with a GGUF converts it to a transformers
    directory first (the tiny test model ships only as a GGUF).
    """
    _check_name(name)
    _check_personas(personas)
    found, files, main = backend_of(path)
    if backend not in (None, found):
        if not (backend == "transformers" and found == "llama.cpp"):
            raise ModelStoreError(f"{path}: a {found} model cannot be served by the {backend} backend")
        with tempfile.TemporaryDirectory(dir=image.db.storage.temporaryDirectory()) as converted:
            convert_gguf(path, Path(converted))
            return _import_files(image, Path(converted), name, personas, progress, "transformers", str(path))
    return _import_files(image, path, name, personas, progress, found, str(path), main)


def _import_files(image: Image, path: Path, name: str, personas: Sequence[str], progress: Callable[[int], None] | None,
                  backend: str, source: str, main: str = "config.json") -> dict[str, Any]:
    named = [(path.name, path)] if path.is_file() else _tree(path)

    def register(root: Any, stored: PersistentMapping) -> dict[str, Any]:
        entries = registry(root)
        if name in entries:
            raise ModelStoreError(f"a model named {name!r} exists; remove it first")
        record = ModelRecord(name, backend, source, main)
        record.files.update(stored)
        entries[name] = record
        for persona in personas:
            _bind_model(root, persona, name)
        return record.summary(bound_personas(root, name))

    return _store(image, named, progress, register, f"models: import {name}")


def _bind_model(root: Any, persona: str, name: str) -> None:
    obj = root[PERSONA_ROOTS[persona.upper()]]
    if obj.model != name and obj.adapter is not None:  # an adapter belongs to its base: leaving the base drops it
        _set_adapter(obj, None, f"model changed to {name}")
    obj.model = name


def bind_model(image: Image, name: str, personas: Sequence[str]) -> None:
    """Make *personas* speak through model *name* (one transaction); an adapter of another base is dropped."""
    _check_personas(personas)

    def work(root: Any) -> None:
        if name not in registry(root):
            raise ModelStoreError(f"no model named {name!r}")
        for persona in personas:
            _bind_model(root, persona, name)

    transact(image.db, work, note=f"models: bind {' '.join(personas)} to {name}")


def bound_personas(root: Any, name: str) -> list[str]:
    return [p for p, r in PERSONA_ROOTS.items() if root[r].model == name]


def list_models(image: Image) -> list[dict[str, Any]]:
    with reading(image.db) as root:
        return [record.summary(bound_personas(root, record.name)) for record in registry(root).values()]


def remove_model(image: Image, name: str) -> None:
    def work(root: Any) -> None:
        entries = registry(root)
        if name not in entries:
            raise ModelStoreError(f"no model named {name!r}")
        bound = bound_personas(root, name)
        if bound:
            raise ModelStoreError(f"{name!r} is bound to {', '.join(bound)}; bind them to another model first")
        users = [a.name for a in adapters(root).values() if a.base == name]
        if users:
            raise ModelStoreError(f"{name!r} is the base of adapter(s) {', '.join(users)}; remove them first")
        del entries[name]

    transact(image.db, work, note=f"models: remove {name}")


# -- adapters ---------------------------------------------------------------------------


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
        files = [(rel, p) for rel, p in _tree(path) if rel == "adapter_config.json" or rel.startswith("adapter_model")]
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
    _check_name(name, "adapter")
    _check_personas(personas)
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

        return _store(image, files, None, register, f"adapters: import {name}")


def adapter_personas(root: Any, name: str) -> list[str]:
    return [p for p, r in PERSONA_ROOTS.items() if root[r].adapter == name]


def _set_adapter(persona: Any, name: str | None, reason: str) -> None:
    persona.adapter_history.append({"adapter": persona.adapter, "replaced_by": name, "at": time.time(), "reason": reason})
    persona.adapter = name


def bind_adapter_in(root: Any, persona: str, name: str | None, reason: str) -> None:
    """Inside a transaction: switch *persona* to adapter *name* (None: the bare base), keeping the old one in history."""
    _check_personas([persona])
    obj = root[PERSONA_ROOTS[persona.upper()]]
    if name is not None:
        record = adapters(root).get(name)
        if record is None:
            raise ModelStoreError(f"no adapter named {name!r}")
        if record.base != obj.model:
            raise ModelStoreError(f"{name!r} adapts {record.base!r}, but {persona.upper()} uses {obj.model!r}")
    if obj.adapter != name:
        _set_adapter(obj, name, reason)


def bind_adapter(image: Image, persona: str, name: str | None, reason: str = "bound by the Architect") -> None:
    transact(image.db, lambda root: bind_adapter_in(root, persona, name, reason), note=f"adapters: bind {persona} {name}")


def revert_adapter(image: Image, persona: str) -> str | None:
    """Restore the adapter *persona* had before its latest change (one transaction); return it."""
    _check_personas([persona])

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


# -- where a backend opens them ------------------------------------------------------------


@dataclass(frozen=True)
class ModelLocation:
    name: str
    backend: str
    path: Path  # the committed blob of a GGUF, or a directory of links to the committed blobs
    version: str


def views_dir() -> Path:
    from batos.substrate.embedded import model_dir

    return model_dir().parent / "views"


def _view(kind: str, name: str, version: str, files: Any) -> Path:
    """A directory of symlinks, one per file, to the committed blobs: transformers and peft open
    directories by file name, and links let them read the blobs in place (nothing extracted)."""
    # per image too: two images holding the same version must not share links to each other's blobs
    where = hashlib.sha256(str(next(iter(files.values())).blob.committed()).encode()).hexdigest()[:8]
    view = views_dir() / f"{kind}-{name}-{version}-{where}"
    view.mkdir(parents=True, exist_ok=True)
    for rel, file in files.items():
        link = view / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        target = file.blob.committed()
        if not (link.is_symlink() and os.readlink(link) == target):
            fresh = link.with_name(link.name + ".new")
            if fresh.is_symlink():
                fresh.unlink()
            fresh.symlink_to(target)
            fresh.replace(link)  # atomic: a reader never sees a missing link
    return view


def _location(record: ModelRecord) -> ModelLocation:
    if record.backend == "llama.cpp":
        return ModelLocation(record.name, record.backend, Path(record.files[record.main].blob.committed()), record.version)
    return ModelLocation(record.name, record.backend, _view("model", record.name, record.version, record.files), record.version)


def locate(image: Image, name: str) -> ModelLocation:
    """Where a model's committed blobs lie, to be opened in place."""
    with reading(image.db) as root:
        return locate_in(root, name)


def locate_in(root: Any, name: str, version: str | None = None) -> ModelLocation:
    """Inside a read: the model's location; *version*, when given (a pin), must still be the current one."""
    record = registry(root).get(name)
    if record is None:
        raise ModelStoreError(f"no model named {name!r} in the image")
    if version is not None and record.version != version:
        raise ModelStoreError(f"model {name!r} is now version {record.version}, not the pinned {version}")
    return _location(record)


def locate_adapter_in(root: Any, name: str, version: str | None = None) -> dict[str, str]:
    """Inside a read: the adapter as a host loads it ({"name", "path"}); *version*, when given, must be current."""
    record = adapters(root).get(name)
    if record is None:
        raise ModelStoreError(f"no adapter named {name!r} in the image")
    if version is not None and record.version != version:
        raise ModelStoreError(f"adapter {name!r} is now version {record.version}, not the pinned {version}")
    return {"name": f"{name}-{record.version}", "path": str(_view("adapter", name, record.version, record.files))}


def ensure_embedded(image: Image, gguf: Path, progress: Callable[[int], None] | None = None) -> ModelLocation:
    """First run: import the embedded default (bound to all four personas) unless present."""
    with reading(image.db) as root:
        present = EMBEDDED_NAME in registry(root)
    if not present:
        import_model(image, gguf, EMBEDDED_NAME, list(PERSONA_ROOTS), progress)
    return locate(image, EMBEDDED_NAME)


def new_registry(traits: UvmObject) -> UvmObject:
    return UvmObject(parents=(traits,), name="models", description="The model registry: each model's files as blobs, and who uses it.",
                     entries=OOBTree(), adapters=OOBTree())
