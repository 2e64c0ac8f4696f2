"""Kernel benchmarks, each against a baseline measured in the same run.

1. Round trip of a message to an already-understood method (p50/p99) through
   a live ``batos kernel`` process, vs a raw pyzmq ROUTER/DEALER echo server
   process on loopback.
2. State-changing messages per second (one commit each), sequential, vs a raw
   ZODB commit loop on a FileStorage.

Usage: ``.venv/bin/python bench/bench_kernel.py [--n N]``; writes
``bench/results/kernel.json`` and ``kernel.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import transaction
import zmq
from persistent.mapping import PersistentMapping
from ZODB import DB
from ZODB.FileStorage import FileStorage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from clients.client import KernelClient, make_ping, make_send  # noqa: E402

BIN = Path(sys.executable).parent
ECHO_SERVER = textwrap.dedent(
    """
    import sys, zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(sys.argv[1])
    while True:
        sock.send_multipart(sock.recv_multipart())
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
    }


def raw_echo(n: int) -> dict[str, float]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, endpoint])
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    payload = b"x" * 64
    try:
        for _ in range(200):  # warm-up, and wait for the server
            dealer.send(payload)
            dealer.recv()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            dealer.send(payload)
            dealer.recv()
            samples.append(time.perf_counter() - t)
    finally:
        dealer.close(0)
        ctx.term()
        server.kill()
        server.wait()
    return percentiles(samples)


def kernel_runs(n: int, directory: Path) -> tuple[dict[str, float], float]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    kernel = subprocess.Popen([str(BIN / "batos"), "kernel", "--image", str(directory / "k.fs"), "--endpoint", endpoint, "--model", "none"],
                              stderr=subprocess.DEVNULL)
    try:
        with KernelClient(endpoint, answer_timeout=1.0, retries=60) as client:
            client.request(make_ping(), timeout=60)
            define = lambda sel, src: client.request(make_send("genesis", "define_method", [sel, src]))
            define("echo", "def echo(self, x):\n    return x\n")
            define("bump", "def bump(self):\n    self.count = (self.count if 'count' in self.slot_names() else 0) + 1\n    return self.count\n")
            for _ in range(200):
                client.request(make_send("genesis", "echo", ["x" * 64]))
            samples = []
            for _ in range(n):
                message = make_send("genesis", "echo", ["x" * 64])
                t = time.perf_counter()
                reply = client.request(message)
                samples.append(time.perf_counter() - t)
                assert reply.kind == "result"
            start = time.perf_counter()
            for _ in range(n):
                assert client.request(make_send("genesis", "bump")).kind == "result"
            writes = n / (time.perf_counter() - start)
    finally:
        kernel.terminate()
        kernel.wait(30)
    return percentiles(samples), writes


def raw_commits(n: int, directory: Path) -> float:
    db = DB(FileStorage(str(directory / "raw.fs")))
    manager = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=manager)
    with manager:
        conn.root()["obj"] = PersistentMapping(count=0)
    obj = conn.root()["obj"]
    start = time.perf_counter()
    for _ in range(n):
        with manager:
            obj["count"] += 1
    rate = n / (time.perf_counter() - start)
    conn.close()
    db.close()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    raw = raw_echo(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        rt, writes = kernel_runs(args.n, Path(tmp))
        zodb = raw_commits(args.n, Path(tmp))
    results = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "n": args.n,
        "round_trip": {"raw_pyzmq_echo": raw, "kernel_understood_method": rt,
                        "p50_ratio": rt["p50_us"] / raw["p50_us"], "p99_ratio": rt["p99_us"] / raw["p99_us"]},
        "writes": {"raw_zodb_commits_per_s": zodb, "kernel_messages_per_s": writes, "ratio": writes / zodb},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel.json").write_text(json.dumps(results, indent=2) + "\n")
    r = results["round_trip"]
    lines = [
        f"# Kernel benchmark ({results['when']}, {results['machine']}, n={args.n})",
        "",
        "| round trip | p50 µs | p99 µs |",
        "|---|---:|---:|",
        f"| raw pyzmq ROUTER/DEALER echo (baseline) | {raw['p50_us']:.0f} | {raw['p99_us']:.0f} |",
        f"| kernel, understood method `genesis echo` | {rt['p50_us']:.0f} | {rt['p99_us']:.0f} |",
        f"| ratio | {r['p50_ratio']:.1f}× | {r['p99_ratio']:.1f}× |",
        "",
        "| state-changing messages, one commit each, sequential | per second |",
        "|---|---:|",
        f"| raw ZODB commit loop, FileStorage (baseline) | {zodb:.0f} |",
        f"| kernel `genesis bump` | {writes:.0f} (ratio {writes / zodb:.3f}) |",
    ]
    (args.out / "kernel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
