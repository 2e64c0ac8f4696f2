"""What the cycle's DELEGATING state asks of memory: queries in, snippets out.

Two sources, merged: the methods of the receiver and its ancestors (ranked by
word overlap with the queries: they are few and always in reach), and a
hybrid search of the knowledge catalog — documents and the skills earlier
cycles installed anywhere (Voyager's skill library), so an earlier skill comes
back as an example for a new one.
"""

from __future__ import annotations

import re
from typing import Any

from batos import memory
from batos.core.uvm import UvmObject
from batos.core.refs import name_of

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Lower-case word set; snake_case and camelCase split into their parts."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower()
    return set(_WORD.findall(spaced))


def retrieve(root: Any, receiver: UvmObject, queries: list[str], k: int = 5) -> list[dict[str, Any]]:
    """Related methods and memories, best first, at most *k*."""
    wanted = set().union(*(words(q) for q in queries)) if queries else set()
    scored = []
    for owner in receiver.ancestors():
        for selector in owner.method_names():
            source = owner.method_record(selector).source
            overlap = len(wanted & words(f"{selector} {source}"))
            if overlap:
                scored.append((overlap, {"kind": "method", "owner": name_of(owner), "selector": selector,
                                         "source": source, "score": overlap}))
    scored.sort(key=lambda item: (-item[0], item[1]["selector"]))
    snippets = [snippet for _, snippet in scored[:k]]
    seen = {(s["owner"], s["selector"]) for s in snippets}
    catalog = root["knowledge_catalog"]
    for query in queries:
        for hit in memory.search(catalog, query, k):
            if hit.doc_id.startswith("skill:"):
                owner, _, selector = hit.title.rpartition(".")
                if (owner, selector) in seen:
                    continue
                seen.add((owner, selector))
                snippets.append({"kind": "skill", "owner": owner, "selector": selector, "source": hit.text, "score": hit.score})
            elif ("doc", hit.chunk_id) not in seen:
                seen.add(("doc", hit.chunk_id))
                snippets.append({"kind": "memory", "owner": hit.title, "selector": hit.doc_id, "source": hit.text, "score": hit.score})
    return snippets[: 2 * k]
