"""What the cycle's DELEGATING state asks of memory: queries in, snippets out.

Two sources, merged: the methods of the receiver and its ancestors that share
a word with the queries, and a hybrid search of the knowledge catalog —
documents and the skills earlier cycles installed anywhere (Voyager's skill
library), so an earlier skill comes back as an example for a new one.

Both are then held to a floor of embedding similarity. A search always
returns its top hits, related or not, and a cycle's prompt used to carry
three unrelated methods (about 550 tokens, 13 s of prompt evaluation per
candidate on 2 cores) for every bench specification.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from batos import memory
from batos.core.uvm import UvmObject
from batos.core.refs import name_of

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Lower-case word set; snake_case and camelCase split into their parts."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower()
    return set(_WORD.findall(spaced))


# Relevance floors, as MiniLM cosine between the queries and a snippet. Every snippet
# costs prompt tokens on every candidate (about 25 ms a token on 2 cores), and unrelated
# methods shown as "related" also steer the model wrong.
OWN = 0.45  # the receiver's own methods share its state: a loose match is worth showing
            # (measured on bench/stateful.json: a method beside its sibling, 0.54-0.74)
ELSEWHERE = 0.7  # anything else must match closely (unrelated bench specs reach 0.67)


def _vectors(catalog: Any, methods: list[tuple[UvmObject, str, str]]) -> np.ndarray:
    """Each method's embedding: its skill document's (name, intent and source) when it has
    one, else its source's, the latter encoded in one batch (this runs on every cycle)."""
    documents = catalog.documents if "documents" in catalog.slot_names() else {}
    vectors = np.zeros((len(methods), memory.DIM), dtype=np.float32)
    missing: list[int] = []
    for i, (owner, selector, _source) in enumerate(methods):
        doc = documents.get(memory.skill_doc_id(owner, selector))
        if doc is not None and len(doc.chunk_ids):
            vectors[i] = doc.chunk_vectors()[0]
        else:
            missing.append(i)
    if missing:
        vectors[missing] = memory.Embedder.encode([f"{methods[i][1]}: {methods[i][2]}" for i in missing])
    return vectors


def retrieve(root: Any, receiver: UvmObject, queries: list[str], k: int = 3) -> list[dict[str, Any]]:
    """Related methods and memories, at most *k*: the receiver's own methods first, then
    whatever else clears its floor, each best first, with its ``similarity``."""
    queries = [q for q in queries if q.strip()]
    if not queries:
        return []
    wanted = set().union(*(words(q) for q in queries))
    query_vectors = memory.Embedder.encode(queries)
    catalog = root["knowledge_catalog"]

    def similarity(vector: np.ndarray) -> float:
        return round(float(np.max(query_vectors @ vector)), 4)

    own: list[dict[str, Any]] = []
    elsewhere: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    methods = [(owner, selector, owner.method_record(selector).source) for owner in receiver.ancestors() for selector in owner.method_names()]
    methods = [m for m in methods if wanted & words(f"{m[1]} {m[2]}")]
    for (owner, selector, source), vector in zip(methods, _vectors(catalog, methods)):
        score = similarity(vector)
        seen.add((name_of(owner), selector))
        if score >= (OWN if owner is receiver else ELSEWHERE):
            (own if owner is receiver else elsewhere).append(
                {"kind": "method", "owner": name_of(owner), "selector": selector, "source": source, "similarity": score})
    for query in queries:
        for hit in memory.search(catalog, query, 4 * k):  # the floor, not the search's rank, decides
            doc = catalog.documents[hit.doc_id]
            score = similarity(doc.chunk_vectors()[list(doc.chunk_ids).index(hit.chunk_id)])
            if score < ELSEWHERE:
                continue
            if hit.doc_id.startswith("skill:"):
                owner_name, _, selector = hit.title.rpartition(".")
                if (owner_name, selector) not in seen:
                    seen.add((owner_name, selector))
                    elsewhere.append({"kind": "skill", "owner": owner_name, "selector": selector, "source": hit.text, "similarity": score})
            elif ("doc", str(hit.chunk_id)) not in seen:
                seen.add(("doc", str(hit.chunk_id)))
                elsewhere.append({"kind": "memory", "owner": hit.title, "selector": hit.doc_id, "source": hit.text, "similarity": score})
    best_first = lambda snippets: sorted(snippets, key=lambda s: (-s["similarity"], s["owner"], s["selector"]))  # noqa: E731
    return (best_first(own) + best_first(elsewhere))[:k]
