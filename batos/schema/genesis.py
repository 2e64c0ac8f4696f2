"""Genesis: the primordial objects of a new image.

Genesis is idempotent: it creates only the root objects that are missing, in
one transaction, and commits nothing at all when the image is complete. It
records the schema version in a new image and refuses one of another schema
(:mod:`batos.schema.migrations` upgrades an older one).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from batos import __version__
from batos.core.image import META_KEY, Image, metadata
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject
from batos.schema.codex import Codex, load_codex
from batos.schema.migrations import SCHEMA_VERSION, add_loop_records, add_persona_histories, require_current, schema_version

ABOUT_SOURCE = '''\
def about(self):
    """The receiver's description and its own slot and method names."""
    return {"description": self.describe(), "slots": self.slot_names(), "methods": self.method_names()}
'''

SYSTEM_PROMPT_SOURCE = '''\
def system_prompt(self):
    """The persona's codex rendered as a system prompt (runs on the persona)."""
    codex = self.codex
    return (
        f"You are {self.name}, {codex['title']}. {codex['core_identity']}\\n"
        f"Mission: {codex['mission']}\\nMethod: {codex['method']}\\n"
        f"Pillars: {'; '.join(codex['pillars'])}."
    )
'''


def _traits(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    traits = UvmObject(name="traits", description="The root prototype: every object's last parent.")
    traits.define_method("about", ABOUT_SOURCE)
    return traits


def _pllm(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    pllm = UvmObject(
        parents=(objs["traits"],),
        name="pLLM",
        description="Model access prototype: personas inherit their model binding from here.",
        model="embedded-default",
        adapter=None,
    )
    pllm.define_method("system_prompt", SYSTEM_PROMPT_SOURCE)
    return pllm


def _persona(persona: str) -> Callable[[dict[str, UvmObject], Codex], UvmObject]:
    def make(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
        entry = codex.personas[persona]
        made = UvmObject(
            parents=(objs["pLLM"],),
            name=persona,
            description=f"{entry.title}: {entry.core_identity}",
            codex=PersistentMapping(
                title=entry.title,
                core_identity=entry.core_identity,
                mission=entry.mission,
                method=entry.method,
                pillars=tuple(entry.pillars),
                duties=tuple(entry.duties),
            ),
        )
        add_persona_histories(made)
        return made

    return make


def _genesis(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    return UvmObject(
        parents=(objs["traits"],),
        name="genesis",
        description="The first object the Architect talks to; what it does not understand, it learns.",
    )


def _knowledge_catalog(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    from batos.memory import ensure_catalog, prepare, store

    catalog = UvmObject(
        parents=(objs["traits"],),
        name="knowledge_catalog",
        description="Fractal memory: documents, chunks and their indexes.",
        documents=OOBTree(),
    )
    ensure_catalog(catalog)
    for memory in codex.memories:
        store(catalog, prepare(memory.id, f"{memory.prompt}\n\n{memory.response}", title=memory.prompt,
                               source="seeds/persona_codex.jsonl", kind="codex"))
    return catalog


def _models(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    from batos.substrate.models import new_registry

    return new_registry(objs["traits"])


def _cognitive_cycle(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    return UvmObject(
        parents=(objs["traits"],),
        name="cognitive_cycle",
        description="Prototype of a cognitive cycle; each cycle is a clone of it.",
        state="IDLE",
        max_attempts=3,
    )


def _orchestrator(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    orchestrator = UvmObject(
        parents=(objs["alfred"],),
        name="orchestrator",
        description="Starts and tracks cognitive cycles (ALFRED's stewardship).",
        active_cycles=OOBTree(),
        cycles=OOBTree(),
        skills=OOBTree(),
    )
    add_loop_records(orchestrator)
    return orchestrator


# Creation order matters: later factories use earlier objects as parents.
PRIMORDIAL: dict[str, Callable[[dict[str, UvmObject], Codex], UvmObject]] = {
    "traits": _traits,
    "pLLM": _pllm,
    "genesis": _genesis,
    "alfred": _persona("ALFRED"),
    "brick": _persona("BRICK"),
    "robin": _persona("ROBIN"),
    "babs": _persona("BABS"),
    "knowledge_catalog": _knowledge_catalog,
    "models": _models,
    "cognitive_cycle": _cognitive_cycle,
    "orchestrator": _orchestrator,
}


def incarnate(image: Image, codex: Codex | None = None) -> list[str]:
    """Create whatever primordial objects are missing; return their names.

    The codex is validated before the transaction starts, so a broken seed
    file leaves the image untouched.
    """
    with reading(image.db) as root:
        require_current(schema_version(root))
        if metadata(root) is not None and all(name in root for name in PRIMORDIAL):
            return []
    codex = codex or load_codex()

    def work(root: Any) -> list[str]:
        require_current(schema_version(root))
        created: list[str] = []
        objs: dict[str, UvmObject] = {}
        for name, factory in PRIMORDIAL.items():
            existing = root.get(name)
            if isinstance(existing, UvmObject):
                objs[name] = existing
                continue
            objs[name] = root[name] = factory(objs, codex)
            created.append(name)
        if metadata(root) is None:
            root[META_KEY] = PersistentMapping(
                schema_version=SCHEMA_VERSION,
                created_at=time.time(),
                created_by=f"batos {__version__}",
                migrations=PersistentList(),
            )
        return created

    return transact(image.db, work, note="genesis")
