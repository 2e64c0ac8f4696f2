"""Fractal memory: the knowledge catalog's documents, chunks, indexes and search.

Everything lives in the image, in slots of the ``knowledge_catalog`` object:

- ``documents`` (OOBTree: doc id -> :class:`~batos.memory.catalog.Document`),
  ``chunks`` (IOBTree: chunk id -> :class:`~batos.memory.catalog.Chunk`), and
  two ``zope.index`` text indexes (Okapi BM25) — one over chunks, one over
  document summaries — stored as they are: they are persistent already.
- Sentence embeddings (all-MiniLM-L6-v2, 384 float32 each) are kept per
  document as one ``bytes`` value, not one Python float per dimension; the
  search matrix is rebuilt into a ``_v_`` cache when the catalog's
  ``generation`` changes.

Ingesting a document is one transaction: its chunks, summary node, vectors
and index entries all land together or not at all, and re-ingesting the same
id replaces the old entries in every index. The expensive work (sentence
splitting, embedding) happens before the transaction starts.

The modules, by concern: :mod:`~batos.memory.text` (sentences, stems, chunks,
summaries), :mod:`~batos.memory.embedder`, :mod:`~batos.memory.catalog` (the
records, store and forget), :mod:`~batos.memory.ranking` (search),
:mod:`~batos.memory.ingestion` (files and ingest), :mod:`~batos.memory.skills`
(learned methods as documents). This package exposes what the rest of BAT OS
calls, so that callers write ``memory.search(...)``.
"""

from batos.memory.catalog import Prepared, ensure_catalog, forget, stats, store
from batos.memory.embedder import DIM, Embedder
from batos.memory.ingestion import IngestError, documents_in, files_under, ingest, prepare
from batos.memory.ranking import search
from batos.memory.skills import prepare_skill, reindex_skill, skill_doc_id

__all__ = [
    "DIM", "Embedder", "IngestError", "Prepared", "documents_in", "ensure_catalog", "files_under", "forget", "ingest",
    "prepare", "prepare_skill", "reindex_skill", "search", "skill_doc_id", "stats", "store",
]
