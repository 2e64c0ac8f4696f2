"""Upgrading a real schema-v2 image (written by that release's own code) to today's schema.

``tests/fixtures/v2_image`` was made by ``tests/fixtures/make_v2_image.py``
with the last v2 release: flat modules (``batos.uvm``...), each object's
slots and methods in their own ``PersistentMapping`` records, and a ``psm``
root. The values asserted here are the ones that script wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batos import memory
from batos.core.check import check_image
from batos.core.errors import SchemaError
from batos.core.image import Image, open_image
from batos.core.txn import reading
from batos.core.uvm import UvmObject
from batos.schema.genesis import PRIMORDIAL, incarnate
from batos.schema.migrations import SCHEMA_VERSION, _names_moved_class, _stored_records, migrate, schema_version

from .conftest import file_uri
from .fixtures.make_v2_image import DOUBLE, GREET_V1, GREET_V2

FIXTURE = Path(__file__).parent / "fixtures" / "v2_image"


@pytest.fixture
def v2_image(tmp_path: Path) -> Image:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    image = open_image(file_uri(tmp_path))
    yield image
    image.close()


def test_the_fixture_is_an_old_image_that_today_refuses(v2_image):
    with reading(v2_image.db) as root:
        assert schema_version(root) == 2
        assert "psm" in root
        genesis = root["genesis"]
        genesis._p_activate()
        assert set(vars(genesis)) == {"_slots", "_methods"}  # the v2 layout: two mappings
    problems = check_image(v2_image).problems
    assert any("batos.uvm.UvmObject, which cannot be imported" in p for p in problems)
    with pytest.raises(SchemaError, match=f"older than v{SCHEMA_VERSION}; run `batos image migrate`"):
        incarnate(v2_image)


def test_v2_image_migrates_in_place_in_one_transaction(v2_image):
    before = v2_image.db.lastTransaction()
    assert migrate(v2_image) == ["v2->v3"]
    assert len(list(v2_image.db.storage.iterator(start=before))) == 2  # the one at `before`, and the migration
    assert check_image(v2_image).problems == []  # every record's own class imports
    reachable = list(_stored_records(v2_image.db.storage, skip=set()))
    assert reachable and not [oid for oid, record in reachable if _names_moved_class(record)]  # nor any it refers to
    assert incarnate(v2_image) == []  # complete: nothing to add
    assert migrate(v2_image) == []
    with reading(v2_image.db) as root:
        assert schema_version(root) == SCHEMA_VERSION
        assert "psm" not in root
        assert sorted(k for k in root if not k.startswith("_")) == sorted([*PRIMORDIAL, "fixture_child", "fixture_proto", "fixture_ring"])


def test_slots_parents_and_methods_survive_exactly(v2_image):
    migrate(v2_image)
    with reading(v2_image.db) as root:
        proto, child, genesis = root["fixture_proto"], root["fixture_child"], root["genesis"]
        assert proto.slot_names() == ["count", "label", "name", "notes", "nothing", "parents", "ratio", "table", "tags"]
        assert (proto.count, proto.ratio, proto.label, proto.nothing) == (7, 0.5, "ünïcode", None)
        assert (proto.tags, proto.table, list(proto.notes)) == (["a", "b"], {"k": (1, 2)}, [1, 2])
        assert proto.parents == (root["traits"],)
        assert child.parents == (proto, genesis)
        assert (child.name, child.count) == ("child", 21)
        # Methods: the current version, the whole history, and inheritance.
        greet = proto.method_record("greet")
        assert [(r.version, r.author, r.cycle, r.reverted_from) for r in greet.history] == [
            (1, "architect", None, None), (2, "BRICK", "c-1", None), (3, "architect", None, 1)
        ]
        assert [r.source for r in greet.history] == [GREET_V1, GREET_V2, GREET_V1]
        assert child.method_record("double").source == DOUBLE
        assert child.greet("you") == "hello you"
        assert child.double() == 42
        assert child.about()["slots"] == ["count", "name", "parents"]  # traits' method, two parents up
        # The primordial objects keep their slots and their inherited methods.
        assert root["brick"].model == "tiny" and root["robin"].model == "embedded-default"
        assert root["brick"].system_prompt().startswith("You are BRICK, The Embodied Brick-Knight Engine.")
        # The knowledge catalog, whose records and text index pipeline name moved classes.
        catalog = root["knowledge_catalog"]
        assert memory.stats(catalog)["documents"] == 7 and memory.stats(catalog)["words_in_lexicon"] > 0
        assert memory.search(catalog, "deconstruction engine", mode="words")


def test_cycles_and_records_behind_btrees_are_migrated(v2_image):
    migrate(v2_image)
    with reading(v2_image.db) as root:
        ring_a = root["fixture_ring"]
        [ring_b, itself] = ring_a.parents
        assert itself is ring_a and ring_b.parents == (ring_a,) and ring_b.name == "ring_b"
        with pytest.raises(AttributeError):
            ring_b.missing  # the cyclic parent graph still terminates
        cycle = root["orchestrator"].cycles["fixture-cycle"]
        assert isinstance(cycle, UvmObject) and cycle.parents == (root["traits"],)
        assert (cycle.state, cycle.selector, cycle.target) == ("COMPLETE", "double", root["fixture_child"])
        assert list(cycle.history) == [{"from": "IDLE", "to": "DECOMPOSING"}]
        assert cycle.max_attempts == 3  # from cognitive_cycle's slots, copied by clone
        model = root["models"].entries["tiny"]
        with model.files["tiny.gguf"].blob.open() as handle:
            assert handle.read() == b"GGUF" + bytes(range(60))


def test_migrated_objects_hold_their_slots_in_their_own_record(v2_image):
    migrate(v2_image)
    with reading(v2_image.db) as root:
        proto = root["fixture_proto"]
        proto._p_activate()
        state = proto.__getstate__()
        assert "_slots" not in state and state["count"] == 7
        assert type(state["_methods"]) is dict and set(state["_methods"]) == {"greet"}
