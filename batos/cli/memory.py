"""``batos memory``: the knowledge catalog — ingest, search, stats, forget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batos.cli.common import Commands, add_command, add_group, human, print_json
from batos.core.errors import BatosError
from batos.core.image import open_image
from batos.core.txn import reading, transact


def register(commands: Commands) -> None:
    actions = add_group(commands, "memory", "the knowledge catalog: ingest, search, stats, forget")
    p = add_command(actions, "ingest", cmd_memory_ingest, "add text/markdown/jsonl files or directories (one transaction per document)", image=True)
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--max-bytes", type=int, default=16 << 20, help="refuse larger files (default 16 MiB)")
    p = add_command(actions, "search", cmd_memory_search, "ranked chunks for a query", image=True)
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    p.add_argument("--mode", choices=["hybrid", "words", "embeddings"], default="hybrid")
    p.add_argument("--hierarchical", action="store_true", help="rank document summaries first, then their chunks")
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "stats", cmd_memory_stats, "documents, chunks, lexicon and vector sizes", image=True)
    p.add_argument("--json", action="store_true")
    p = add_command(actions, "forget", cmd_memory_forget, "remove a document and its chunks from every index", image=True)
    p.add_argument("doc_id")


def cmd_memory_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from batos import memory

    items: list[tuple[str, str, str, str]] = []
    problems: list[str] = []
    for given in args.paths:
        path = Path(given)
        if not path.exists():
            problems.append(f"{path}: no such file or directory")
            continue
        for file in memory.files_under(path):
            for entry in memory.documents_in(file, args.max_bytes):
                if isinstance(entry, memory.IngestError):
                    problems.append(str(entry))
                else:
                    items.append(entry)
    stored: list[str] = []
    if items:
        with open_image(args.image) as image, tqdm(total=len(items), unit="doc", desc="ingesting", file=sys.stderr) as bar:
            for item in items:
                # one transaction per document: a bad one is skipped, the others still go in
                try:
                    stored += memory.ingest(image.db, [item], source=item[0], progress=lambda _doc: bar.update(1))
                except memory.IngestError as exc:
                    problems.append(str(exc))
                    bar.update(1)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"ingested {len(stored)} document(s); {len(problems)} skipped")
    return 1 if problems else 0


def cmd_memory_search(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        hits = memory.search(root["knowledge_catalog"], args.query, args.k, mode=args.mode, hierarchical=args.hierarchical)
    if args.json:
        print_json([h.as_dict() for h in hits])
        return 0
    if not hits:
        print("no hits")
    for rank, hit in enumerate(hits, start=1):
        ranks = f"words #{hit.words_rank or '-'}, embeddings #{hit.embedding_rank or '-'}"
        print(f"{rank}. {hit.title[:70]}  [{hit.doc_id}]  score {hit.score:.4f} ({ranks})")
        print(f"   {hit.text[:240]}")
    return 0


def cmd_memory_stats(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image, read_only=args.image_is_file) as image, reading(image.db) as root:
        result = memory.stats(root["knowledge_catalog"])
    if args.json:
        print_json(result)
    else:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items())) or "none"
        print(f"documents: {result['documents']} ({kinds})")
        print(f"chunks:    {result['chunks']}; lexicon: {result['words_in_lexicon']} words; vectors: {human(result['vector_bytes'])}")
    return 0


def cmd_memory_forget(args: argparse.Namespace) -> int:
    from batos import memory

    with open_image(args.image) as image:
        gone = transact(image.db, lambda root: memory.forget(root["knowledge_catalog"], args.doc_id), note=f"memory: forget {args.doc_id}")
    if not gone:
        raise BatosError(f"no document {args.doc_id!r} in memory")
    print(f"forgot {args.doc_id}")
    return 0
