"""Getting documents in: files read as text, prepared outside any transaction, stored one by one.

The expensive work (sentence splitting, embedding) happens in :func:`prepare`,
before the transaction starts; each document is then one transaction, so a
failure leaves the catalog as it was. Named ``ingestion`` rather than
``ingest`` so that the package's ``ingest`` function does not shadow it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from batos.core.errors import BatosError
from batos.core.txn import transact
from batos.memory.catalog import Prepared, store
from batos.memory.embedder import Embedder
from batos.memory.text import extractive_summary, semantic_chunks, sentences

MAX_BYTES = 16 << 20  # larger files are refused before they are read
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".jsonl"}


class IngestError(BatosError):
    """A document that cannot be ingested (empty, binary, too large, malformed)."""


def prepare(doc_id: str, text: str, *, title: str | None = None, source: str = "", kind: str = "text") -> Prepared:
    """Split, chunk, summarise and embed one document (no database access)."""
    if not isinstance(text, str) or not text.strip():
        raise IngestError(f"{doc_id}: empty document")
    title = title or doc_id
    sents = sentences(text)
    sentence_vectors = Embedder.encode(sents)
    chunks = semantic_chunks(sents, sentence_vectors)
    summary = extractive_summary(title, sents, sentence_vectors)
    vectors = Embedder.encode(chunks)
    summary_vector = Embedder.encode([f"{title}. {summary}"])[0]
    return Prepared(doc_id, title, source, kind, hashlib.sha256(text.encode()).hexdigest(), chunks, vectors, summary, summary_vector)


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """A file's text, with a clear error for what is not a text document."""
    size = path.stat().st_size
    if size == 0:
        raise IngestError(f"{path}: empty file")
    if size > max_bytes:
        raise IngestError(f"{path}: {size} bytes is larger than the {max_bytes}-byte limit; split it first")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise IngestError(f"{path}: binary file (NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise IngestError(f"{path}: only whitespace")
    return text


def documents_in(path: Path, max_bytes: int = MAX_BYTES) -> Iterator[tuple[str, str, str, str] | IngestError]:
    """(doc id, title, text, kind) for each document a file holds; errors are yielded, not raised,
    so one bad file does not stop a directory."""
    try:
        text = read_text(path, max_bytes)
    except (IngestError, OSError) as exc:
        yield exc if isinstance(exc, IngestError) else IngestError(f"{path}: {exc}")
        return
    if path.suffix.lower() != ".jsonl":
        title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), path.name)[:120]
        yield str(path), title, text, "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            yield IngestError(f"{path}:{number}: not JSON ({exc})")
            continue
        if not isinstance(entry, dict):
            yield IngestError(f"{path}:{number}: a line must be a JSON object")
            continue
        body = entry.get("text") or "\n\n".join(str(entry[k]) for k in ("prompt", "response") if entry.get(k))
        if not isinstance(body, str) or not body.strip():
            yield IngestError(f"{path}:{number}: no text (expected a 'text' field or 'prompt'/'response')")
            continue
        doc_id = str(entry.get("id") or f"{path}#{number}")
        yield doc_id, str(entry.get("title") or entry.get("prompt") or doc_id)[:120], body, "jsonl"


def files_under(path: Path) -> list[Path]:
    """The text files below a directory (by suffix), or the one file given."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return [path]


def ingest(db: Any, items: Iterable[tuple[str, str, str, str]], source: str = "",
           progress: Callable[[str], None] | None = None) -> list[str]:
    """Prepare and store documents, one transaction each; returns the ids stored."""
    stored = []
    for doc_id, title, text, kind in items:
        prepared = prepare(doc_id, text, title=title, source=source, kind=kind)
        transact(db, lambda root, p=prepared: store(root["knowledge_catalog"], p), note=f"memory: ingest {doc_id}"[:200])
        stored.append(doc_id)
        if progress is not None:
            progress(doc_id)
    return stored
