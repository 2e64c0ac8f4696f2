"""Genesis: the primordial objects, idempotence, the codex, schema and migrations."""

from __future__ import annotations

import json

import pytest

from batos.schema import migrations
from batos.schema.codex import CodexError, load_codex, seeds_dir
from batos.core.errors import SchemaError
from batos.schema.genesis import PRIMORDIAL, incarnate
from batos.schema.migrations import migrate, schema_version
from batos.core.image import META_KEY, open_image, root_names
from batos.core.txn import reading, transact

from .conftest import file_uri


def test_genesis_creates_every_primordial_object(image):
    with reading(image.db) as root:
        assert root_names(root) == sorted(PRIMORDIAL)
        assert schema_version(root) == migrations.SCHEMA_VERSION
        traits, pllm = root["traits"], root["pLLM"]
        assert root["genesis"].parents == (traits,)
        for persona in ("alfred", "brick", "robin", "babs"):
            assert root[persona].parents == (pllm,)
        assert pllm.parents == (traits,)
        assert root["orchestrator"].parents == (root["alfred"],)


def test_persona_codex_comes_from_the_seed_file(image):
    codex = load_codex()
    with reading(image.db) as root:
        brick = root["brick"]
        seed = codex.personas["BRICK"]
        assert brick.name == "BRICK"
        assert brick.codex["mission"] == seed.mission
        assert brick.codex["pillars"] == tuple(seed.pillars)
        # system_prompt is a method stored as source on pLLM, run with self = brick: the one rendering of a codex.
        assert brick.system_prompt() == (
            "You are BRICK, The Embodied Brick-Knight Engine. BRICK is the Deconstruction Engine of BAT OS: the system's logical "
            "and architectural engine.\n"
            "Mission: Understand the 'what' and the 'how': decompose missions into plans and write the code that carries them out.\n"
            "Method: The Way of the Unexpected Brick: shatter cognitive knots with disruptive, unexpected truths.\n"
            "Pillars: The Tamland Engine (Brick Tamland); The Guide (The Hitchhiker's Guide to the Galaxy); The LEGO Batman."
        )
        assert root["robin"].system_prompt().startswith("You are ROBIN, The Embodied Heart.")


def test_genesis_methods_are_inherited(image):
    with reading(image.db) as root:
        about = root["genesis"].about()
        assert about["methods"] == []
        assert "description" in about["slots"]
        assert root["traits"].method_record("about").author == "architect"


def test_second_genesis_changes_nothing(image):
    size = image.path.stat().st_size
    tid = image.db.lastTransaction()
    assert incarnate(image) == []
    assert image.db.lastTransaction() == tid
    assert image.path.stat().st_size == size


def test_genesis_restores_a_missing_root_and_keeps_the_rest(image):
    with reading(image.db) as root:
        alfred_oid = root["alfred"]._p_oid
    transact(image.db, lambda root: root.__delitem__("babs"))
    assert incarnate(image) == ["babs"]
    with reading(image.db) as root:
        assert root["alfred"]._p_oid == alfred_oid
        assert root["babs"].name == "BABS"


def test_image_from_a_newer_release_is_refused(image):
    transact(image.db, lambda root: root[META_KEY].__setitem__("schema_version", 99))
    transact(image.db, lambda root: root.__delitem__("babs"))
    tid = image.db.lastTransaction()
    with pytest.raises(SchemaError, match="v99 is newer"):
        incarnate(image)
    with pytest.raises(SchemaError, match="v99 is newer"):
        migrate(image)
    assert image.db.lastTransaction() == tid


def test_migration_hook_upgrades_an_old_image_in_place(image, monkeypatch):
    def add_motto(root):
        root["genesis"].motto = "the image is the identity"

    now = migrations.SCHEMA_VERSION
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", now + 1)
    monkeypatch.setattr(migrations, "MIGRATIONS", {now: add_motto})
    with pytest.raises(SchemaError, match=f"older than v{now + 1}; run `batos image migrate`"):
        incarnate(image)
    assert migrate(image) == [f"v{now}->v{now + 1}"]
    with reading(image.db) as root:
        assert root["genesis"].motto == "the image is the identity"
        assert schema_version(root) == now + 1
        assert [(m["from"], m["to"]) for m in root[META_KEY]["migrations"]] == [(now, now + 1)]
    tid = image.db.lastTransaction()
    assert migrate(image) == []
    assert image.db.lastTransaction() == tid


def test_a_failing_migration_changes_nothing(image, monkeypatch):
    def half_done(root):
        root["genesis"].motto = "partial"
        raise RuntimeError("migration bug")

    now = migrations.SCHEMA_VERSION
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", now + 1)
    monkeypatch.setattr(migrations, "MIGRATIONS", {now: half_done})
    with pytest.raises(RuntimeError):
        migrate(image)
    with reading(image.db) as root:
        assert schema_version(root) == now
        assert not root["genesis"].responds_to("motto")


def make_v1(root):
    """Turn a fresh image into what a v1 release wrote: none of the v2 slots."""
    del root["models"].adapters
    for name in migrations.PERSONA_NAMES:
        del root[name].adapter_history, root[name].codex_history
    for slot in ("contrapunti", "goals", "golden", "trainings", "proposals", "dissonance"):
        delattr(root["orchestrator"], slot)
    root[META_KEY]["schema_version"] = 1


def test_v1_image_gains_adapters_histories_and_loop_records_by_migration(image):
    transact(image.db, make_v1)
    with pytest.raises(SchemaError, match=f"older than v{migrations.SCHEMA_VERSION}"):
        incarnate(image)
    assert migrate(image) == ["v1->v2", "v2->v3"]
    with reading(image.db) as root:
        assert len(root["models"].adapters) == 0
        assert list(root["brick"].adapter_history) == [] and list(root["robin"].codex_history) == []
        assert len(root["orchestrator"].proposals) == 0 and list(root["orchestrator"].dissonance) == []
    assert incarnate(image) == []


GOOD = seeds_dir() / "persona_codex.jsonl"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda lines: lines + ["{not json"], "not JSON"),
        (lambda lines: lines + ['{"kind": "dream", "id": "x"}'], "Line 12"),
        (lambda lines: [l for l in lines if '"BABS"' not in l], "personas missing: BABS"),
        (lambda lines: lines + [lines[0]], "ALFRED defined twice"),
        (lambda lines: [lines[0].replace('"mission": "', '"mission": "", "x": "')] + lines[1:], "Line 1"),
        (lambda lines: lines + ['{"kind": "memory", "id": "x", "prompt": "", "response": "r"}'], "prompt"),
    ],
)
def test_bad_codex_is_refused_and_the_image_is_untouched(tmp_path, monkeypatch, mutate, reason):
    lines = GOOD.read_text().splitlines()
    bad = tmp_path / "persona_codex.jsonl"
    bad.write_text("\n".join(mutate(lines)) + "\n")
    monkeypatch.setenv("BATOS_SEEDS", str(tmp_path))
    img = open_image(file_uri(tmp_path, "fresh.fs"), create=True)
    tid = img.db.lastTransaction()
    with pytest.raises(CodexError, match=reason):
        incarnate(img)
    assert img.db.lastTransaction() == tid
    with reading(img.db) as root:
        assert root_names(root) == []
    img.close()


def test_non_utf8_and_missing_codex(tmp_path):
    bad = tmp_path / "codex.jsonl"
    bad.write_bytes(b'{"kind": "memory", "id": "\xff"}\n')
    with pytest.raises(CodexError, match="not UTF-8"):
        load_codex(bad)
    with pytest.raises(CodexError, match="not found"):
        load_codex(tmp_path / "absent.jsonl")


def test_seed_memories_are_loaded():
    codex = load_codex()
    assert len(codex.memories) == 7
    assert all(json.dumps(m.model_dump()) for m in codex.memories)
    assert {m.id for m in codex.memories} >= {"codex/brick", "codex/living-image"}
