"""What the cycle's DELEGATING state asks of memory: queries in, snippets out.

Until the knowledge catalog has its indexes (the memory issue), this searches
what the image already knows how to do — the methods of the receiver and its
ancestors, and the skills earlier cycles installed anywhere — by word
overlap, so an earlier skill comes back as an example for a new one.
"""

from __future__ import annotations

import re
from typing import Any

from .uvm import UvmObject

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Lower-case word set; snake_case and camelCase split into their parts."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").lower()
    return set(_WORD.findall(spaced))


def retrieve(root: Any, receiver: UvmObject, queries: list[str], k: int = 5) -> list[dict[str, Any]]:
    """Rank known methods against the queries; best first, at most *k*."""
    wanted = set().union(*(words(q) for q in queries)) if queries else set()
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    for owner in receiver.ancestors():
        for selector in owner.method_names():
            record = owner.method_record(selector)
            candidates[(owner.describe(), selector)] = {
                "kind": "method", "owner": owner.describe().split(":")[0], "selector": selector,
                "source": record.source, "intent": "",
            }
    skills = root["orchestrator"]._slots.get("skills")
    for skill in (skills.values() if skills is not None else ()):
        owner = skill["owner"]
        if owner.method_record(skill["selector"]) is None:
            continue  # forgotten since; the library only offers what exists
        key = (owner.describe(), skill["selector"])
        candidates.setdefault(key, {
            "kind": "skill", "owner": owner.describe().split(":")[0], "selector": skill["selector"],
            "source": owner.method_record(skill["selector"]).source, "intent": skill.get("intent") or "",
        })
    scored = []
    for snippet in candidates.values():
        text = f"{snippet['selector']} {snippet['intent']} {snippet['source']}"
        overlap = len(wanted & words(text))
        if overlap:
            scored.append((overlap, snippet["selector"], snippet))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [dict(snippet, score=score) for score, _, snippet in scored[:k]]
