"""Skills are memories too: each learned method is a one-chunk catalog document.

So that a later cycle's retrieval finds what the image already knows how to
do, next to the codex and the Architect's documents.
"""

from __future__ import annotations

import hashlib

from batos.core.refs import name_of, oid_hex
from batos.core.uvm import UvmObject
from batos.memory.catalog import Prepared, forget, store
from batos.memory.embedder import Embedder


def skill_doc_id(owner: UvmObject, selector: str) -> str:
    """The catalog id of a method's skill document: stable across versions of the method."""
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
