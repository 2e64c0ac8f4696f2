"""The mandate suite: learning through the cycle vs the bare model, same run.

Each mandate (``bench/mandates.json``) is a message an empty ``genesis`` does
not understand, an intent with an example, and the expected answer.

- **Cycle**: a live ``batos kernel`` with the embedded model; the mandate is
  sent with ``batos``'s client and succeeds if the reply equals the expected
  value. Time is from send to result (plan, retrieve, write, audit, trial,
  retries, install, answer).
- **Bare model**: the same model, asked once to write the same method from
  the same intent, without plan, context, audit or retries; the code is
  extracted leniently and run in the same sandboxed trial with the message's
  arguments. Success if it returns the expected value.

Usage: ``.venv/bin/python bench/bench_cycle.py [--limit N]``; writes
``bench/results/cycle.json`` and ``cycle.md``.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batos.substrate.embedded import EMBEDDED_DEFAULT, assemble  # noqa: E402
from batos.cognition.guardian import Rejected, extract_method  # noqa: E402
from batos.substrate.modelhost import HostedModel, ModelPool  # noqa: E402
from batos.sandbox.trial import run_trial  # noqa: E402
from clients.client import KernelClient, make_ping, make_send  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def equal(got: object, expected: object) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return abs(float(got) - float(expected)) < 1e-9  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return got == expected


def run_cycle_suite(mandates: list[dict], directory: Path) -> list[dict]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    kernel = subprocess.Popen(
        [str(BIN / "batos"), "kernel", "--image", str(directory / "bench.fs"), "--endpoint", endpoint],
        stderr=open(directory / "kernel.log", "wb"),
    )
    results = []
    try:
        with KernelClient(endpoint, answer_timeout=1.0, retries=120) as client:
            client.request(make_ping(), timeout=120)
            for mandate in mandates:
                states: list[str] = []
                started = time.perf_counter()
                reply = client.request(
                    make_send("genesis", mandate["selector"], mandate["args"], intent=mandate["intent"]),
                    timeout=900,
                    on_reply=lambda r: states.append(r.state) if r.kind == "progress" else None,
                )
                took = time.perf_counter() - started
                ok = reply.kind == "result" and equal(reply.value, mandate["expected"])
                results.append({
                    "selector": mandate["selector"], "ok": ok, "seconds": took,
                    "attempts": states.count("VALIDATING"),
                    "reply": reply.value if reply.kind == "result" else f"{reply.code}: {reply.message[:200]}",
                })
                print(f"cycle {mandate['selector']:<22} {'ok ' if ok else 'BAD'} {took:6.1f}s attempts={states.count('VALIDATING')}", flush=True)
    finally:
        kernel.terminate()
        kernel.wait(60)
    return results


def run_bare_suite(mandates: list[dict]) -> list[dict]:
    pool = ModelPool()  # the same hosted backend the kernel serves BRICK's model with
    model = HostedModel(pool, EMBEDDED_DEFAULT.name, assemble())
    results = []
    for mandate in mandates:
        params = ", ".join(f"arg{i}" for i in range(len(mandate["args"])))
        prompt = (
            f"Write a Python method `def {mandate['selector']}(self, {params})` that does this: {mandate['intent']}. "
            "Answer with the code only."
        )
        started = time.perf_counter()
        text = model.complete("You are a helpful coding assistant.", prompt, max_tokens=700, temperature=0.1)
        ok, detail = False, ""
        try:
            name, source = extract_method(text, mandate["selector"])
            trial = run_trial(name, source, {"name": "genesis", "slots": {}, "methods": {}}, mandate["args"], {})
            if trial.ok and trial.value is not None:
                try:
                    ok = equal(ast.literal_eval(trial.value), mandate["expected"])
                except (ValueError, SyntaxError):
                    ok = False
            detail = trial.value if trial.ok else trial.error
        except Rejected as exc:
            detail = str(exc)
        took = time.perf_counter() - started
        results.append({"selector": mandate["selector"], "ok": ok, "seconds": took, "reply": detail})
        print(f"bare  {mandate['selector']:<22} {'ok ' if ok else 'BAD'} {took:6.1f}s", flush=True)
    pool.close()
    return results


def summary(results: list[dict]) -> dict:
    times = [r["seconds"] for r in results]
    return {
        "success": sum(r["ok"] for r in results),
        "total": len(results),
        "success_rate": sum(r["ok"] for r in results) / len(results),
        "median_s": statistics.median(times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N mandates")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    mandates = json.loads((ROOT / "bench" / "mandates.json").read_text())[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        cycle = run_cycle_suite(mandates, Path(tmp))
    bare = run_bare_suite(mandates)
    results = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}, {EMBEDDED_DEFAULT.name}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cycle": summary(cycle), "bare": summary(bare),
        "per_mandate": {"cycle": cycle, "bare": bare},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cycle.json").write_text(json.dumps(results, indent=2, default=repr) + "\n")
    c, b = results["cycle"], results["bare"]
    lines = [
        f"# Mandate suite ({results['when']}, {results['machine']})",
        "",
        "| | succeeded | success rate | median time |",
        "|---|---:|---:|---:|",
        f"| bare model, one shot (baseline) | {b['success']}/{b['total']} | {b['success_rate']:.0%} | {b['median_s']:.1f} s |",
        f"| cognitive cycle through the kernel | {c['success']}/{c['total']} | {c['success_rate']:.0%} | {c['median_s']:.1f} s |",
        "",
        "| mandate | cycle | attempts | s | bare | s |",
        "|---|---|---:|---:|---|---:|",
    ]
    for cr, br in zip(cycle, bare):
        lines.append(f"| {cr['selector']} | {'ok' if cr['ok'] else 'failed'} | {cr['attempts']} | {cr['seconds']:.1f} | {'ok' if br['ok'] else 'failed'} | {br['seconds']:.1f} |")
    (args.out / "cycle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
