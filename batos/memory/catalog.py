"""The knowledge catalog's records and the writes that keep its indexes in step.

A document's chunks, summary node, vectors and index entries are written by
:func:`store` together (inside the caller's transaction) and removed together,
so no index ever points at a chunk that is gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent

from batos.core.uvm import UvmObject
from batos.memory.embedder import DIM
from batos.memory.text import new_text_index


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

    def chunk_vectors(self) -> np.ndarray:
        """One unit-length row per chunk, in ``chunk_ids`` order (stored as bytes: one record, no pickled arrays)."""
        return np.frombuffer(self.vectors, dtype=np.float32).reshape(-1, DIM)


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


def ensure_catalog(catalog: UvmObject) -> None:
    """Create the catalog's indexes on first use (genesis gives only ``documents``)."""
    slots = catalog.slot_names()
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
    catalog.generation += 1  # the search matrices are rebuilt when this moves
    return doc


def forget(catalog: UvmObject, doc_id: str) -> bool:
    """Remove a document from every index (inside a transaction); False when there was none."""
    ensure_catalog(catalog)
    doc = catalog.documents.get(doc_id)
    if doc is None:
        return False
    _remove(catalog, doc)
    catalog.generation += 1
    return True


def stats(catalog: UvmObject) -> dict[str, Any]:
    """Counts for ``batos memory stats``; an image whose catalog was never indexed reads as empty."""
    slots = catalog.slot_names()
    indexed = "chunks" in slots
    documents = catalog.documents if "documents" in slots else {}
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
