"""The image's schema: its current version, and how an older image is upgraded.

The image records the schema version it was written with (``root['_batos']``).
``MIGRATIONS[n]`` upgrades the root of a schema-n image to schema n+1, and
:func:`migrate` applies every step an image needs in one transaction, so an
upgrade happens completely or not at all. A release that changes the image's
shape bumps ``SCHEMA_VERSION`` and registers its step here; an image written
by a newer release is refused rather than misread.
"""

from __future__ import annotations

import io
import pickletools
import time
from typing import Any, Callable, Iterator

from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from ZODB.serialize import referencesf
from ZODB.utils import z64

from batos import __version__
from batos.core.errors import SchemaError
from batos.core.image import MOVED_CLASSES, Image, metadata
from batos.core.roster import PERSONA_ROOTS
from batos.core.txn import transact
from batos.core.uvm import UvmObject

SCHEMA_VERSION = 3

Migration = Callable[[Any], None]

PERSONA_NAMES = tuple(PERSONA_ROOTS.values())


def schema_version(root: Any) -> int | None:
    meta = metadata(root)
    return None if meta is None else int(meta["schema_version"])


def require_current(version: int | None) -> None:
    """Refuse an image of another schema (None: a new image, which is current)."""
    if version is None or version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"image schema v{version} is newer than this kernel understands (v{SCHEMA_VERSION}); upgrade batos"
        )
    raise SchemaError(f"image schema v{version} is older than v{SCHEMA_VERSION}; run `batos image migrate`")


# -- v1 -> v2 ------------------------------------------------------------------------------------


def add_persona_histories(persona: UvmObject) -> None:
    """v2 persona slots: the adapter and codex bindings each keep their history."""
    persona.adapter_history = PersistentList()
    persona.codex_history = PersistentList()


def add_loop_records(orchestrator: UvmObject) -> None:
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
        add_persona_histories(root[name])
    add_loop_records(root["orchestrator"])


# -- v2 -> v3 ------------------------------------------------------------------------------------


def _v2_to_v3(root: Any) -> None:
    """Slots and methods in each object's own record, today's module paths, no ``psm``.

    Up to v2 an object kept its slots and its methods in two
    ``PersistentMapping`` records (``_slots``, ``_methods``), and the stored
    classes lived in flat modules (``batos.uvm``...). Every reachable record
    whose pickles name a moved class is rewritten: the class factory already
    maps the old names, so marking the object changed re-pickles it with the
    new ones. An old-layout object first takes the two mappings' contents into
    its own state; the mappings, and the ``psm`` state table that nothing
    read, are left unreachable (``zodb pack`` reclaims them).
    """
    jar = root._p_jar
    psm = root.get("psm")
    unreachable = set()
    if psm is not None:
        del root["psm"]
        unreachable.add(psm._p_oid)
    for oid, record in _stored_records(jar.db().storage, skip=unreachable):
        if oid in unreachable or not _names_moved_class(record):
            continue
        obj = jar.get(oid)
        obj._p_activate()
        if isinstance(obj, UvmObject) and "_slots" in obj.__dict__:
            state = obj.__dict__
            slots, methods = state.pop("_slots"), state["_methods"]
            unreachable.update((slots._p_oid, methods._p_oid))  # reached only from here, so met after this
            for name, value in slots.items():
                state.setdefault(name, value)  # a slot an earlier step of this migration set wins
            state["_methods"] = dict(methods)
        obj._p_changed = True


def _stored_records(storage: Any, skip: set[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``(oid, record)`` for every stored record reachable from the root, not
    entering *skip*; a record's references are followed after it is yielded."""
    seen = {z64, *skip}
    stack = [z64]
    while stack:
        oid = stack.pop()
        record, _serial = storage.load(oid)
        yield oid, record
        for ref in referencesf(record):
            if ref not in seen:
                seen.add(ref)
                stack.append(ref)


def _names_moved_class(record: bytes) -> bool:
    """Whether a record's pickles name a class that has moved (its own, or a
    referenced object's). ZODB writes pickle protocol 3, which names each
    class with a GLOBAL opcode whose argument is ``"module name"``."""
    stream = io.BytesIO(record)
    for _pickle in ("class", "state"):
        for opcode, arg, _pos in pickletools.genops(stream):
            if opcode.name == "GLOBAL" and tuple(arg.split(" ", 1)) in MOVED_CLASSES:
                return True
    return False


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(image: Image) -> list[str]:
    """Upgrade an older image to SCHEMA_VERSION in place, in one transaction."""

    def work(root: Any) -> list[str]:
        meta = metadata(root)
        if meta is None:
            raise SchemaError("image has no BAT OS metadata; run `batos image init` first")
        version = int(meta["schema_version"])
        if version > SCHEMA_VERSION:
            require_current(version)
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
