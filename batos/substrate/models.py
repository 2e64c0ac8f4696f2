"""Models in the image: one ZODB blob per model file, and a registry object.

A model is imported file by file: each file is streamed into the blob
storage's own temporary directory while it is hashed (on disk, never held in
memory), then handed to ``Blob.consumeFile``, which renames it into place — so
the only copy is the one the image must own. Loading reads the committed blob
file where it lies: no tar archive, no extraction to a temporary directory.

This module owns the registry's records (models and adapters alike, since
both are file sets stored this way), the staging of files into blobs, and the
views a backend opens; :mod:`batos.substrate.adapters` builds the LoRA
adapter operations on top of it.
"""

from __future__ import annotations

import hashlib
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
from batos.substrate.embedded import copy_hashing, model_dir

EMBEDDED_NAME = "embedded-default"


class ModelStoreError(BatosError):
    """A model or adapter that cannot be imported, found, bound or removed."""


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
    """The models by name (inside a transaction or a read)."""
    return root["models"].entries


def adapters(root: Any) -> OOBTree:
    """The adapters by name (inside a transaction or a read)."""
    return root["models"].adapters


def check_name(name: str, what: str = "model") -> None:
    """Refuse a name that would not be safe in a view's directory name."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelStoreError(f"invalid {what} name {name!r} (letters, digits, '-', '_', '.')")


def check_personas(personas: Sequence[str]) -> None:
    unknown = [p for p in personas if p.upper() not in PERSONA_ROOTS]
    if unknown:
        raise ModelStoreError(f"unknown persona(s) {', '.join(unknown)}; known: {', '.join(PERSONA_ROOTS)}")


def tree_files(path: Path) -> list[tuple[str, Path]]:
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
        return "transformers", [p for _rel, p in tree_files(path)], "config.json"
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
    handle, staged = tempfile.mkstemp(dir=directory, prefix="import-")
    with os.fdopen(handle, "wb") as out:
        size, sha256 = copy_hashing([source], out, progress)
    return staged, size, sha256


def store_files(image: Image, files: list[tuple[str, Path]], progress: Callable[[int], None] | None,
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
    check_name(name)
    check_personas(personas)
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
    named = [(path.name, path)] if path.is_file() else tree_files(path)

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

    return store_files(image, named, progress, register, f"models: import {name}")


def switch_adapter(persona: Any, name: str | None, reason: str) -> None:
    """Set *persona*'s adapter (None: the bare base), keeping the old one in its history for a revert."""
    persona.adapter_history.append({"adapter": persona.adapter, "replaced_by": name, "at": time.time(), "reason": reason})
    persona.adapter = name


def _bind_model(root: Any, persona: str, name: str) -> None:
    obj = root[PERSONA_ROOTS[persona.upper()]]
    if obj.model != name and obj.adapter is not None:  # an adapter belongs to its base: leaving the base drops it
        switch_adapter(obj, None, f"model changed to {name}")
    obj.model = name


def bind_model(image: Image, name: str, personas: Sequence[str]) -> None:
    """Make *personas* speak through model *name* (one transaction); an adapter of another base is dropped."""
    check_personas(personas)

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


# -- where a backend opens them ------------------------------------------------------------


@dataclass(frozen=True)
class ModelLocation:
    name: str
    backend: str
    path: Path  # the committed blob of a GGUF, or a directory of links to the committed blobs
    version: str


def views_dir() -> Path:
    """Beside the model directory: views are links, cheap to rebuild, and never part of the image."""
    return model_dir().parent / "views"


def blob_view(kind: str, name: str, version: str, files: Any) -> Path:
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
    return ModelLocation(record.name, record.backend, blob_view("model", record.name, record.version, record.files), record.version)


def locate(image: Image, name: str) -> ModelLocation:
    """Where a model's committed blobs lie, to be opened in place."""
    with reading(image.db) as root:
        return locate_in(root, name)


def pinned_record(entries: OOBTree, what: str, name: str, version: str | None) -> Any:
    """Inside a read: the *what* (model or adapter) named *name*; *version*, when given (a pin), must still be the current one."""
    record = entries.get(name)
    if record is None:
        raise ModelStoreError(f"no {what} named {name!r} in the image")
    if version is not None and record.version != version:
        raise ModelStoreError(f"{what} {name!r} is now version {record.version}, not the pinned {version}")
    return record


def locate_in(root: Any, name: str, version: str | None = None) -> ModelLocation:
    """Inside a read: the model's location; *version*, when given (a pin), must still be the current one."""
    return _location(pinned_record(registry(root), "model", name, version))


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
