"""Memory benchmarks: retrieval quality, search latency at scale, ingestion speed.

1. **Recall@5** of a labelled set (``bench/retrieval_set.json``: paraphrased
   queries, each with the document that should come back) over the persona
   codex plus a few hundred real documents — the module and class docstrings
   of Python's standard library, read from source, never imported — for
   words-only (BM25), embeddings-only, hybrid (RRF) and hybrid summary-first.
2. **Search latency** p50/p99 at 1k, 10k and 100k chunks. The chunks are
   synthetic (sentences drawn from the docstring vocabulary) with random unit
   vectors instead of model embeddings, so building 100k chunks takes minutes,
   not an hour; the query is embedded by the real model and that time is
   included. Documents are written 100 per transaction here (ingestion proper
   is one per document).
3. **Ingestion throughput** of the real pipeline (punkt, embeddings, chunking,
   summary, one commit per document) on the docstring corpus.

Usage: ``.venv/bin/python bench/bench_memory.py [--sizes 1000 10000 100000]``;
writes ``bench/results/memory.json`` and ``memory.md``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import platform
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batos import memory  # noqa: E402
from batos.memory.text import sentences  # noqa: E402
from batos.schema.genesis import incarnate  # noqa: E402
from batos.core.image import open_image  # noqa: E402
from batos.core.txn import reading, transact  # noqa: E402

SKIP = {"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__", "ensurepip", "pydoc_data"}


def stdlib_documents(limit: int = 600) -> list[tuple[str, str, str, str]]:
    """(id, title, text, kind) from module and class docstrings of the standard library:
    every module docstring first, then class docstrings up to *limit* documents."""
    found = []
    classes = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(part in SKIP or part.startswith("test_") for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        doc = ast.get_docstring(tree)
        if doc and len(doc) >= 100:
            found.append((f"stdlib/{rel}", str(rel), doc, "text"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                cls_doc = ast.get_docstring(node)
                if cls_doc and len(cls_doc) >= 200:
                    classes.append((f"stdlib/{rel}:{node.name}", f"{rel} {node.name}", cls_doc, "text"))
    return (found + classes)[:limit]


def recall(catalog, queries: list[dict], **options) -> float:
    hits = 0
    for q in queries:
        found = {h.doc_id for h in memory.search(catalog, q["query"], 5, **options)}
        hits += q["expected"] in found
    return hits / len(queries)


def quality_and_ingestion(directory: Path) -> dict:
    queries = json.loads((ROOT / "bench" / "retrieval_set.json").read_text())
    docs = stdlib_documents()
    with open_image(str(directory / "quality.fs"), create=True) as image:
        incarnate(image)
        memory.Embedder.encode(["warm up"])  # model load is not ingestion
        started = time.perf_counter()
        memory.ingest(image.db, docs)
        took = time.perf_counter() - started
        with reading(image.db) as root:
            catalog = root["knowledge_catalog"]
            stats = memory.stats(catalog)
            known = set(catalog.documents.keys())
            labelled = [q for q in queries if q["expected"] in known]
            result = {
                "corpus": {"documents": stats["documents"], "chunks": stats["chunks"], "labelled_queries": len(labelled)},
                "recall_at_5": {
                    "words": recall(catalog, labelled, mode="words"),
                    "embeddings": recall(catalog, labelled, mode="embeddings"),
                    "hybrid": recall(catalog, labelled, mode="hybrid"),
                    "hybrid_summary_first": recall(catalog, labelled, mode="hybrid", hierarchical=True),
                },
                "ingestion": {"documents": len(docs), "seconds": took, "docs_per_s": len(docs) / took,
                              "chunks_per_s": (stats["chunks"] - 9) / took},
            }
    return result


def synthetic_latency(directory: Path, size: int, vocabulary: list[str], rng: random.Random) -> dict:
    per_doc = 10
    with open_image(str(directory / f"scale{size}.fs"), create=True) as image:
        incarnate(image)
        started = time.perf_counter()
        for batch_start in range(0, size // per_doc, 100):
            batch = []
            for d in range(batch_start, min(batch_start + 100, size // per_doc)):
                chunks = [" ".join(rng.choices(vocabulary, k=30)) + "." for _ in range(per_doc)]
                vectors = np.asarray([rng.gauss(0, 1) for _ in range(per_doc * memory.DIM)], dtype=np.float32).reshape(per_doc, memory.DIM)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                summary = chunks[0][:200]
                batch.append(memory.Prepared(f"syn/{d}", f"synthetic {d}", "bench", "synthetic",
                                             hashlib.sha256(summary.encode()).hexdigest(), chunks, vectors, summary, vectors.mean(axis=0)))

            def write(root, batch=batch):
                for prepared in batch:
                    memory.store(root["knowledge_catalog"], prepared)

            transact(image.db, write)
        build = time.perf_counter() - started
        queries = [" ".join(rng.choices(vocabulary, k=4)) for _ in range(60)]
        latencies: dict[str, dict[str, float]] = {}
        with reading(image.db) as root:
            catalog = root["knowledge_catalog"]
            started = time.perf_counter()
            memory.search(catalog, "warm the matrix cache", 5)
            cold = time.perf_counter() - started
            for name, options in {"words": {"mode": "words"}, "embeddings": {"mode": "embeddings"},
                                  "hybrid": {"mode": "hybrid"}, "hybrid_summary_first": {"mode": "hybrid", "hierarchical": True}}.items():
                samples = []
                for q in queries:
                    t = time.perf_counter()
                    memory.search(catalog, q, 5, **options)
                    samples.append(time.perf_counter() - t)
                samples.sort()
                latencies[name] = {"p50_ms": statistics.median(samples) * 1000, "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000}
        return {"chunks": size, "build_s": build, "first_search_s": cold, "latency": latencies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    rng = random.Random(7)
    vocabulary = sorted({w for _, _, text, _ in stdlib_documents() for w in sentences(text)[0].split() if w.isalpha()})
    with tempfile.TemporaryDirectory() as tmp:
        quality = quality_and_ingestion(Path(tmp))
        scale = [synthetic_latency(Path(tmp), size, vocabulary, rng) for size in args.sizes]
    results = {"machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
               "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **quality, "scale": scale}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    r, c, i = results["recall_at_5"], results["corpus"], results["ingestion"]
    lines = [
        f"# Memory benchmark ({results['when']}, {results['machine']})",
        "",
        f"Recall@5 over {c['documents']} documents / {c['chunks']} chunks (codex + stdlib docstrings), {c['labelled_queries']} labelled paraphrased queries:",
        "",
        "| words only (BM25) | embeddings only | hybrid (RRF) | hybrid, summary-first |",
        "|---:|---:|---:|---:|",
        f"| {r['words']:.0%} | {r['embeddings']:.0%} | {r['hybrid']:.0%} | {r['hybrid_summary_first']:.0%} |",
        "",
        f"Ingestion (real pipeline, one commit per document): {i['docs_per_s']:.1f} docs/s, {i['chunks_per_s']:.1f} chunks/s ({i['documents']} docs in {i['seconds']:.0f} s).",
        "",
        "| chunks | build s | first search s | words p50/p99 ms | embeddings p50/p99 ms | hybrid p50/p99 ms | summary-first p50/p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scale:
        lat = s["latency"]
        cells = " | ".join(f"{lat[k]['p50_ms']:.1f} / {lat[k]['p99_ms']:.1f}" for k in ("words", "embeddings", "hybrid", "hybrid_summary_first"))
        lines.append(f"| {s['chunks']} | {s['build_s']:.0f} | {s['first_search_s']:.2f} | {cells} |")
    (args.out / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
