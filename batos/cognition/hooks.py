"""The cognitive layer's answers to the object model's hooks (:mod:`batos.core.hooks`).

A message nobody understands opens a cycle; a learned method that is
reverted or forgotten is re-indexed in (or dropped from) the skill library
in the same transaction. :func:`install` registers both; the composition
root and every :class:`~batos.cognition.cycle.CycleEngine` call it.
"""

from __future__ import annotations

from typing import Any

from batos.core.hooks import HOOKS
from batos.core.refs import oid_hex
from batos.core.uvm import UvmObject


def skill_changed(root: Any, owner: UvmObject, selector: str) -> None:
    """Keep the skill library in step with a learned method's owner."""
    if "orchestrator" not in root:
        return
    orchestrator = root["orchestrator"]
    skills = orchestrator.skills if "skills" in orchestrator.slot_names() else None
    key = f"{oid_hex(owner)}:{selector}"
    skill = skills.get(key) if skills is not None else None
    if skill is None:
        return
    from batos import memory  # heavy (embeddings): only when a learned method changes

    memory.reindex_skill(root["knowledge_catalog"], owner, selector, skill.get("intent", ""))
    if owner.method_record(selector) is None:
        del skills[key]


def install() -> None:
    """Register the cycle and the skill index with the object model (idempotent)."""
    from batos.cognition.cycle import open_cycle  # the cycle imports this module's layer peers

    HOOKS.on_not_understood(open_cycle)
    HOOKS.on_method_changed(skill_changed)
