"""Genesis: the primordial objects, the schema version, and migrations.

Genesis is idempotent: it creates only the root objects that are missing, in
one transaction, and commits nothing at all when the image is complete. The
image records its schema version; an image written by an older release is
upgraded in place by the registered migrations (one transaction for all), and
one written by a newer release is refused rather than misread.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from batos import __version__
from batos.schema.codex import Codex, load_codex
from batos.core.errors import SchemaError
from batos.core.image import META_KEY, Image, metadata
from batos.core.roster import PERSONA_ROOTS
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

SCHEMA_VERSION = 2

# MIGRATIONS[n] upgrades the root of a schema-n image to schema n+1. A release
# that changes the image's shape bumps SCHEMA_VERSION and registers one here.
Migration = Callable[[Any], None]

PERSONA_NAMES = tuple(PERSONA_ROOTS.values())


def _persona_history(persona: UvmObject) -> None:
    """v2 persona slots: the adapter and codex bindings each keep their history."""
    persona.adapter_history = PersistentList()
    persona.codex_history = PersistentList()


def _orchestrator_loops(orchestrator: UvmObject) -> None:
    """v2 orchestrator slots: the slower loops' records (contrapunti, goals, golden data, proposals)."""
    orchestrator.contrapunti = OOBTree()
    orchestrator.goals = OOBTree()
    orchestrator.golden = OOBTree()  # persona -> PersistentList of judged examples
    orchestrator.trainings = PersistentList()
    orchestrator.proposals = OOBTree()
    orchestrator.dissonance = PersistentList()  # (at, score, source) signals, newest last


def _v1_to_v2(root: Any) -> None:
    """Adapters as blobs, persona binding histories, and the slower loops' state."""
    root["models"].adapters = OOBTree()
    for name in PERSONA_NAMES:
        _persona_history(root[name])
    _orchestrator_loops(root["orchestrator"])


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}

# The cycle's states and their legal successors (the cycle issue drives them).
CYCLE_STATES: dict[str, tuple[str, ...]] = {
    "IDLE": ("DECOMPOSING", "FAILED"),
    "DECOMPOSING": ("DELEGATING", "FAILED"),
    "DELEGATING": ("SYNTHESIZING", "FAILED"),
    "SYNTHESIZING": ("VALIDATING", "FAILED"),
    "VALIDATING": ("COMPLETE", "SYNTHESIZING", "FAILED"),
    "COMPLETE": (),
    "FAILED": (),
}

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
        _persona_history(made)
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


def _psm(objs: dict[str, UvmObject], codex: Codex) -> UvmObject:
    states = PersistentMapping(
        {
            name: UvmObject(parents=(objs["traits"],), name=name, successors=successors, terminal=not successors)
            for name, successors in CYCLE_STATES.items()
        }
    )
    return UvmObject(
        parents=(objs["traits"],),
        name="psm",
        description="The Prototypal State Machine: one prototype per cognitive-cycle state.",
        states=states,
        initial="IDLE",
    )


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
    _orchestrator_loops(orchestrator)
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
    "psm": _psm,
    "cognitive_cycle": _cognitive_cycle,
    "orchestrator": _orchestrator,
}


def schema_version(root: Any) -> int | None:
    meta = metadata(root)
    return None if meta is None else int(meta["schema_version"])


def _require_current(version: int | None) -> None:
    if version is None or version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"image schema v{version} is newer than this kernel understands (v{SCHEMA_VERSION}); upgrade batos"
        )
    raise SchemaError(f"image schema v{version} is older than v{SCHEMA_VERSION}; run `batos image migrate`")


def incarnate(image: Image, codex: Codex | None = None) -> list[str]:
    """Create whatever primordial objects are missing; return their names.

    The codex is validated before the transaction starts, so a broken seed
    file leaves the image untouched.
    """
    with reading(image.db) as root:
        _require_current(schema_version(root))
        if metadata(root) is not None and all(name in root for name in PRIMORDIAL):
            return []
    codex = codex or load_codex()

    def work(root: Any) -> list[str]:
        _require_current(schema_version(root))
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


def migrate(image: Image) -> list[str]:
    """Upgrade an older image to SCHEMA_VERSION in place, in one transaction."""

    def work(root: Any) -> list[str]:
        meta = metadata(root)
        if meta is None:
            raise SchemaError("image has no BAT OS metadata; run `batos image init` first")
        version = int(meta["schema_version"])
        if version > SCHEMA_VERSION:
            _require_current(version)
        applied: list[str] = []
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise SchemaError(f"no migration registered from schema v{version}")
            step(root)
            applied.append(f"v{version}->v{version + 1}")
            meta["migrations"].append({"from": version, "to": version + 1, "at": time.time(), "by": __version__})
            version += 1
        if applied:
            meta["schema_version"] = version
        return applied

    return transact(image.db, work, note="migrate")
