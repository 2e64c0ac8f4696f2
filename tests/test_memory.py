"""Fractal memory: chunking, ingestion, indexes without orphans, hybrid search, skills."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from batos import memory
from batos.memory import ingestion
from batos.memory.text import MAX_CHUNK_CHARS, MIN_CHUNK_CHARS, semantic_chunks, sentences
from batos.cognition.cycle import CycleEngine
from batos.kernel.core import Kernel
from batos.testing import ScriptedModel, SharedPersonas
from batos.core.txn import reading, transact
from batos.wire.protocol import Send

from .conftest import BIN

GARDEN = (
    "# Gardening\n\nTomatoes need full sun and deep watering twice a week. Prune the suckers so the plant "
    "puts its energy into fruit. Stake them before they sprawl.\n\n"
    "Compost improves the structure of clay soil. Mulch keeps moisture in during the summer."
)
ASTRONOMY = (
    "Jupiter is the largest planet of the solar system. Its Great Red Spot is a storm larger than the Earth. "
    "The planet has dozens of moons, among them Europa, which hides an ocean under its ice. Galileo discovered "
    "the four largest moons in 1610."
)


def catalog_counts(root):
    catalog = root["knowledge_catalog"]
    return (
        len(catalog.documents),
        len(catalog.chunks),
        catalog.chunk_index.documentCount(),
        catalog.summary_index.documentCount(),
        sum(len(d.chunk_ids) + 1 for d in catalog.documents.values()),
    )


def test_genesis_ingested_the_codex(image):
    with reading(image.db) as root:
        stats = memory.stats(root["knowledge_catalog"])
        assert stats["documents"] == 7 and stats["kinds"] == {"codex": 7}
        hits = memory.search(root["knowledge_catalog"], "who is the moral and empathetic compass", 3)
        assert hits[0].doc_id == "codex/robin"


def test_semantic_chunks_break_between_topics():
    text = f"{GARDEN}\n\n{ASTRONOMY}"
    sents = sentences(text)
    chunks = semantic_chunks(sents, memory.Embedder.encode(sents))
    assert len(chunks) >= 2
    assert not any("Tomatoes" in c and "Jupiter" in c for c in chunks)
    assert all(len(c) <= MAX_CHUNK_CHARS for c in chunks)


def test_chunks_respect_the_size_limits():
    sents = [f"Sentence number {i} talks about the same topic again and again." for i in range(80)]
    chunks = semantic_chunks(sents, memory.Embedder.encode(sents))
    assert all(len(c) <= MAX_CHUNK_CHARS for c in chunks)
    assert all(len(c) >= MIN_CHUNK_CHARS for c in chunks[:-1])
    assert " ".join(chunks).count("Sentence number") == 80


def test_vectors_are_stored_compactly(image):
    memory.ingest(image.db, [("garden", "Gardening", GARDEN, "markdown")])
    with reading(image.db) as root:
        doc = root["knowledge_catalog"].documents["garden"]
        assert isinstance(doc.vectors, bytes)
        assert len(doc.vectors) == len(doc.chunk_ids) * memory.DIM * 4
        vectors = np.frombuffer(doc.vectors, dtype=np.float32).reshape(-1, memory.DIM)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_reingesting_replaces_without_orphans(image):
    memory.ingest(image.db, [("doc", "Doc", GARDEN, "text")])
    with reading(image.db) as root:
        first = catalog_counts(root)
        old_ids = set(root["knowledge_catalog"].documents["doc"].chunk_ids)
    memory.ingest(image.db, [("doc", "Doc", ASTRONOMY, "text")])
    with reading(image.db) as root:
        counts = catalog_counts(root)
        catalog = root["knowledge_catalog"]
        assert counts[0] == first[0]
        assert counts[1] == counts[4]  # chunks tree == what documents reference: no orphans
        assert counts[2] + counts[3] == counts[1]  # every chunk indexed exactly once
        assert not old_ids & set(catalog.chunks.keys())
        assert memory.search(catalog, "tomatoes pruning suckers", 5, mode="words") == []
        assert memory.search(catalog, "Jupiter moons", 1)[0].doc_id == "doc"


def test_ingestion_is_one_transaction(image, monkeypatch):
    with reading(image.db) as root:
        before = catalog_counts(root)
    tid = image.db.lastTransaction()
    real_store = memory.store

    def broken(catalog, prepared):
        real_store(catalog, prepared)  # everything written...
        raise RuntimeError("disk full")  # ...then the commit never happens

    monkeypatch.setattr(ingestion, "store", broken)  # what ingest calls
    with pytest.raises(RuntimeError):
        memory.ingest(image.db, [("garden", "Gardening", GARDEN, "markdown")])
    assert image.db.lastTransaction() == tid
    with reading(image.db) as root:
        assert catalog_counts(root) == before


def test_search_modes_hierarchy_and_no_hits(image):
    memory.ingest(image.db, [("garden", "Gardening", GARDEN, "markdown"), ("space", "Astronomy", ASTRONOMY, "text")])
    with reading(image.db) as root:
        catalog = root["knowledge_catalog"]
        for mode in ("words", "embeddings", "hybrid"):
            hits = memory.search(catalog, "how often should tomatoes be watered", 3, mode=mode)
            assert hits and hits[0].doc_id == "garden", mode
        hybrid = memory.search(catalog, "moons of the biggest planet", 3)
        assert hybrid[0].doc_id == "space" and hybrid[0].embedding_rank == 1
        flat = memory.search(catalog, "Jupiter storm system", 10)
        deep = memory.search(catalog, "Jupiter storm system", 10, hierarchical=True, documents=1)
        assert {h.doc_id for h in deep} == {"space"}
        assert len({h.doc_id for h in flat}) > 1  # without the hierarchy, unrelated chunks come along
        assert memory.search(catalog, "zzzz qqqq", 5) == []
        assert memory.search(catalog, "   ", 5) == []
        with pytest.raises(ValueError):
            memory.search(catalog, "x", mode="psychic")


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"   \n\t\n", "only whitespace"), (b"\x00\x01\x02binary", "binary file"), (b"\xff\xfeabc", "not UTF-8")],
)
def test_bad_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    [error] = list(memory.documents_in(path))
    assert isinstance(error, memory.IngestError) and message in str(error)


def test_huge_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(40 << 20)  # sparse: 40 MB that are never read
    [error] = list(memory.documents_in(path))
    assert "larger than the" in str(error)


def test_jsonl_lines_are_documents_and_bad_lines_are_reported(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "Alpha text."}\n{"prompt": "Q?", "response": "A."}\nnot json\n[1]\n{"id": "e"}\n')
    entries = list(memory.documents_in(path))
    good = [e for e in entries if not isinstance(e, Exception)]
    bad = [str(e) for e in entries if isinstance(e, Exception)]
    assert [g[0] for g in good] == ["a", f"{path}#2"]
    assert good[1][2] == "Q?\n\nA."
    assert [b.split(": ", 1)[1] for b in bad] == ["not JSON (Expecting value: line 1 column 1 (char 0))", "a line must be a JSON object", "no text (expected a 'text' field or 'prompt'/'response')"]


def test_learned_skills_are_memories(image):
    code = "```python\ndef double(self, x):\n    return 2 * x\n```"
    engine = CycleEngine(image.db, SharedPersonas(ScriptedModel([code])))
    kernel = Kernel(image, engine=engine)
    reply = kernel.send(Send(v=1, id="1", kind="send", target="genesis", selector="double", args=[3], intent="multiply a number by two"))
    assert reply.value == 6
    with reading(image.db) as root:
        doc_id = memory.skill_doc_id(root["genesis"], "double")
        catalog = root["knowledge_catalog"]
        assert catalog.documents[doc_id].kind == "skill"
        assert memory.search(catalog, "multiply by two", 1)[0].doc_id == doc_id
    transact(image.db, lambda root: root["genesis"].define_method("double", "def double(self, x):\n    return x + x\n"))
    transact(image.db, lambda root: root["genesis"].revert_method("double", 1))
    with reading(image.db) as root:
        assert "2 * x" in root["knowledge_catalog"].chunks[root["knowledge_catalog"].documents[doc_id].chunk_ids[0]].text
    transact(image.db, lambda root: root["genesis"].forget_method("double"))
    with reading(image.db) as root:
        assert doc_id not in root["knowledge_catalog"].documents
        assert len(root["orchestrator"].skills) == 0
        assert catalog_counts(root)[1] == catalog_counts(root)[4]


def test_memory_commands(image_uri, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "garden.md").write_text(GARDEN)
    (docs / "space.txt").write_text(ASTRONOMY)
    (docs / "binary.txt").write_bytes(b"\x00\x00")
    (docs / "ignored.png").write_bytes(b"\x89PNG")
    run = lambda *a: subprocess.run([str(BIN / "batos"), "memory", *a, "--image", image_uri], capture_output=True, text=True, timeout=300)  # noqa: E731
    ingest = run("ingest", str(docs))
    assert ingest.returncode == 1  # one file was skipped...
    assert "ingested 2 document(s); 1 skipped" in ingest.stdout  # ...and the others still went in
    assert "binary file" in ingest.stderr and "Traceback" not in ingest.stderr
    stats = run("stats")
    assert stats.stdout.startswith("documents: 9 (codex 7, markdown 1, text 1)")
    search = run("search", "largest planet")
    assert search.returncode == 0 and "1. Astronomy" not in search.stdout and "space.txt" in search.stdout.splitlines()[0]
    assert run("search", "zzzz qqqq").stdout.strip() == "no hits"
    assert run("forget", str(docs / "space.txt")).returncode == 0
    missing = run("forget", "nothing")
    assert missing.returncode == 1 and "no document 'nothing'" in missing.stderr
