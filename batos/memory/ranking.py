"""Search over the catalog: BM25 and embedding rankings, fused by reciprocal rank.

Named ``ranking`` rather than ``search`` so that the package's ``search``
function does not shadow its own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from zope.index.text.okapiindex import OkapiIndex

from batos.core.uvm import UvmObject
from batos.memory.embedder import DIM, Embedder

RRF_K = 60
MIN_SIMILARITY = 0.25  # nonsense queries top out near 0.2 against real text (measured on the codex)


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
            blocks.append(doc.chunk_vectors())
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


def _rankings(word_index: OkapiIndex, ids: np.ndarray, matrix: np.ndarray, query: str, query_vector: np.ndarray | None,
              mode: str, allowed: set[int] | None, limit: int) -> dict[str, list[int]]:
    """The rankings *mode* asks for, over one level (chunks, or document summaries)."""
    rankings: dict[str, list[int]] = {}
    if mode != "embeddings":
        rankings["words"] = _word_ranking(word_index, query, allowed, limit)
    if mode != "words":
        rankings["embeddings"] = _embedding_ranking(ids, matrix, query_vector, allowed, limit)
    return rankings


def search(catalog: UvmObject, query: str, k: int = 5, *, mode: str = "hybrid", hierarchical: bool = False,
           documents: int = 3, candidates: int = 50) -> list[Hit]:
    """Ranked chunks for *query*. ``mode``: hybrid (RRF of words and embeddings),
    words (BM25 only) or embeddings (cosine only). ``hierarchical`` ranks document
    summaries first and searches only the chunks of the best *documents*."""
    if mode not in ("hybrid", "words", "embeddings"):
        raise ValueError(f"unknown search mode {mode!r}")
    if "chunks" not in catalog.slot_names() or not query.strip():
        return []
    matrices = _matrices(catalog)
    query_vector = Embedder.encode([query])[0] if mode != "words" else None
    allowed: set[int] | None = None
    if hierarchical:
        summary_rankings = _rankings(catalog.summary_index, matrices.summary_ids, matrices.summaries, query, query_vector,
                                     mode, None, candidates)
        allowed = set()
        for summary_id, _score, _ranks in _fuse(summary_rankings, documents):
            allowed.update(catalog.documents[catalog.chunks[summary_id].doc_id].chunk_ids)
        if not allowed:
            return []
    rankings = _rankings(catalog.chunk_index, matrices.chunk_ids, matrices.chunks, query, query_vector, mode, allowed, candidates)
    hits = []
    for chunk_id, score, ranks in _fuse(rankings, k):
        chunk = catalog.chunks[chunk_id]
        doc = catalog.documents[chunk.doc_id]
        hits.append(Hit(chunk_id, chunk.doc_id, doc.title, chunk.text, round(score, 6), ranks.get("words"), ranks.get("embeddings")))
    return hits
