"""Benchmarks of the living image, each against a baseline from the same run.

1. Slot reads: an own slot, and a slot found through one and three parents,
   vs a plain Python attribute read.
2. Small-change commits per second: one UvmObject slot write per transaction
   vs one raw ZODB ``PersistentMapping`` item write per transaction, both on a
   FileStorage in the same directory.

Each subject is measured interleaved with its baseline (reads: every repeat
times all four; commits: rounds in alternating order), so that a machine
whose speed drifts during the run (a shared VM) does not favour either side.

Usage: ``.venv/bin/python bench/bench_image.py [--commits N] [--out DIR]``;
writes ``image.json`` and ``image.md`` under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import timeit
from pathlib import Path

import transaction
from persistent.mapping import PersistentMapping
from ZODB import DB
from ZODB.FileStorage import FileStorage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batos.core.uvm import UvmObject  # noqa: E402


class Plain:
    def __init__(self) -> None:
        self.value = 1


def bench_reads(number: int = 200_000, repeat: int = 7) -> dict[str, float]:
    """Best ns per read of each case; every repeat times all of them in turn."""
    plain = Plain()
    top = UvmObject(value=1)
    own = UvmObject(value=1)
    one = UvmObject(parents=[top])
    three = UvmObject(parents=[UvmObject(parents=[UvmObject(parents=[top])])])
    cases = {
        "plain_attribute_ns": lambda: plain.value,
        "own_slot_ns": lambda: own.value,
        "one_parent_ns": lambda: one.value,
        "three_parents_ns": lambda: three.value,
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for key, stmt in cases.items():
            best[key] = min(best[key], timeit.timeit(stmt, number=number) / number * 1e9)
    return best


class Committer:
    """One object in its own FileStorage, changed by one small write per transaction."""

    def __init__(self, path: Path, use_uvm: bool) -> None:
        self.db = DB(FileStorage(str(path)))
        self.manager = transaction.TransactionManager(explicit=True)
        self.conn = self.db.open(transaction_manager=self.manager)
        self.use_uvm = use_uvm
        with self.manager:
            self.conn.root()["obj"] = UvmObject(counter=0) if use_uvm else PersistentMapping(counter=0)
        self.obj = self.conn.root()["obj"]
        self.elapsed = 0.0

    def run(self, n: int) -> None:
        start = time.perf_counter()
        for i in range(n):
            with self.manager:
                if self.use_uvm:
                    self.obj.counter = i
                else:
                    self.obj["counter"] = i
        self.elapsed += time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()
        self.db.close()


def commits_per_second(directory: Path, n: int, rounds: int = 10) -> tuple[float, float]:
    """(raw PersistentMapping, UvmObject) commits per second, in alternating rounds."""
    raw = Committer(directory / "raw.fs", use_uvm=False)
    uvm = Committer(directory / "uvm.fs", use_uvm=True)
    for turn in range(rounds):
        for committer in (raw, uvm) if turn % 2 == 0 else (uvm, raw):
            committer.run(n // rounds)
    for committer in (raw, uvm):
        committer.close()
    done = n // rounds * rounds
    return done / raw.elapsed, done / uvm.elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    reads = bench_reads()
    with tempfile.TemporaryDirectory() as tmp:
        raw, uvm = commits_per_second(Path(tmp), args.commits)
    results = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "reads": reads,
        "read_ratios_vs_plain": {
            k.removesuffix("_ns"): round(v / reads["plain_attribute_ns"], 1)
            for k, v in reads.items()
            if k != "plain_attribute_ns"
        },
        "commits": {"n": args.commits, "raw_persistent_mapping_per_s": raw, "uvm_object_per_s": uvm, "uvm_over_raw": uvm / raw},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Image benchmark ({results['when']}, {results['machine']})",
        "",
        "| slot read | ns/read | × plain attribute |",
        "|---|---:|---:|",
        f"| plain Python attribute (baseline) | {reads['plain_attribute_ns']:.0f} | 1.0 |",
    ]
    for key, label in [("own_slot", "own slot"), ("one_parent", "through 1 parent"), ("three_parents", "through 3 parents")]:
        lines.append(f"| {label} | {reads[key + '_ns']:.0f} | {results['read_ratios_vs_plain'][key]} |")
    lines += [
        "",
        f"| small-change commits ({args.commits} each, FileStorage) | commits/s |",
        "|---|---:|",
        f"| raw ZODB PersistentMapping (baseline) | {raw:.0f} |",
        f"| UvmObject slot write | {uvm:.0f} (ratio {uvm / raw:.2f}) |",
    ]
    (args.out / "image.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
