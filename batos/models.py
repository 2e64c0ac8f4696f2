"""Models in the image: one ZODB blob per model file, and a registry object.

A model is imported file by file: each file is streamed into the blob
storage's own temporary directory while it is hashed (on disk, never held in
memory), then handed to ``Blob.consumeFile``, which renames it into place — so
the only copy is the one the image must own. Loading reads the committed blob
file where it lies: no tar archive, no extraction to a temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from BTrees.OOBTree import OOBTree
from persistent import Persistent
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from .errors import BatosError
from .image import Image
from .txn import reading, transact
from .uvm import UvmObject

CHUNK = 8 << 20
PERSONA_ROOTS = {"ALFRED": "alfred", "BRICK": "brick", "ROBIN": "robin", "BABS": "babs"}
EMBEDDED_NAME = "embedded-default"


class ModelStoreError(BatosError):
    """A model that cannot be imported, found or removed."""


class ModelFile(Persistent):
    def __init__(self, name: str, size: int, sha256: str, blob: Blob) -> None:
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.blob = blob


class ModelRecord(Persistent):
    def __init__(self, name: str, backend: str, source: str, main: str) -> None:
        self.name = name
        self.backend = backend  # "llama.cpp" (a GGUF file) or "transformers" (a model directory)
        self.source = source
        self.main = main  # the file a backend opens (the GGUF, or config.json for a directory)
        self.files: PersistentMapping = PersistentMapping()
        self.created_at = time.time()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    def summary(self, personas: list[str]) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "files": len(self.files), "size": self.size,
                "sha256": {n: f.sha256 for n, f in self.files.items()}, "personas": personas, "source": self.source}


def registry(root: Any) -> OOBTree:
    return root["models"].entries


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
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        return "transformers", files, "config.json"
    raise ModelStoreError(f"{path}: no such file or directory")


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


def import_model(image: Image, path: Path, name: str, personas: list[str] = (), progress: Callable[[int], None] | None = None) -> dict[str, Any]:  # type: ignore[assignment]
    """Store a model's files as blobs and register it (one transaction); bind personas."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelStoreError(f"invalid model name {name!r} (letters, digits, '-', '_', '.')")
    unknown = [p for p in personas if p.upper() not in PERSONA_ROOTS]
    if unknown:
        raise ModelStoreError(f"unknown persona(s) {', '.join(unknown)}; known: {', '.join(PERSONA_ROOTS)}")
    backend, files, main = backend_of(path)
    temp_dir = image.db.storage.temporaryDirectory()
    staged: list[tuple[str, str, int, str]] = []
    try:
        for file in files:
            rel = file.name if file == path else str(file.relative_to(path))
            staged_path, size, sha = _stage(file, temp_dir, progress)
            staged.append((rel, staged_path, size, sha))

        def work(root: Any) -> dict[str, Any]:
            entries = registry(root)
            if name in entries:
                raise ModelStoreError(f"a model named {name!r} exists; remove it first")
            record = ModelRecord(name, backend, str(path), main)
            for rel, staged_path, size, sha in staged:
                blob = Blob()
                blob.consumeFile(staged_path)  # a rename, not a copy
                record.files[rel] = ModelFile(rel, size, sha, blob)
            entries[name] = record
            for persona in personas:
                root[PERSONA_ROOTS[persona.upper()]].model = name
            return record.summary(bound_personas(root, name))

        return transact(image.db, work, attempts=1, note=f"models: import {name}")
    finally:
        for _rel, staged_path, _size, _sha in staged:
            if os.path.exists(staged_path):  # left over when the import failed
                os.unlink(staged_path)


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
        del entries[name]

    transact(image.db, work, note=f"models: remove {name}")


@dataclass(frozen=True)
class ModelLocation:
    name: str
    backend: str
    path: Path  # the committed blob file of the main file


def locate(image: Image, name: str) -> ModelLocation:
    """Where the committed blob of a model's main file lies, to be opened in place."""
    with reading(image.db) as root:
        record = registry(root).get(name)
        if record is None:
            raise ModelStoreError(f"no model named {name!r} in the image")
        main = record.files[record.main]
        return ModelLocation(name, record.backend, Path(main.blob.committed()))


def ensure_embedded(image: Image, gguf: Path, progress: Callable[[int], None] | None = None) -> ModelLocation:
    """First run: import the embedded default (bound to all four personas) unless present."""
    with reading(image.db) as root:
        present = EMBEDDED_NAME in registry(root)
    if not present:
        import_model(image, gguf, EMBEDDED_NAME, list(PERSONA_ROOTS), progress)
    return locate(image, EMBEDDED_NAME)


def new_registry(traits: UvmObject) -> UvmObject:
    return UvmObject(parents=(traits,), name="models", description="The model registry: each model's files as blobs, and who uses it.",
                     entries=OOBTree())

