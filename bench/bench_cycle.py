"""The cycle against the bare model it wraps, on work nobody tuned it for, in one run.

Suites (``bench/*.json``):

- ``specs``: functions specified as people paste them — a signature without
  ``self`` and a docstring with ``>>>`` examples. Success: the learned method
  passes every hidden test (tests not shown in the docstring).
- ``stateful``: message sequences to one fresh object whose later messages
  depend on the state earlier ones left (its state starts absent). Success:
  every step's reply is the expected value (or an error where one is due).
- ``mandates``: the original 22 one-liners (only when asked for).

Arms, on the same model file, the same thread count and the same machine:

- **cycle**: a live ``batos kernel --no-loops`` (no judging or training
  competing for the cores); each problem on its own fresh object.
- **bare one shot**: the same model in the same host (all cores, llama.cpp's
  own prefix reuse and RAM prompt cache), asked once with a plain prompt
  (the spec, or the step's intent) at temperature 0.1.
- **bare best-of-k**: samples at temperature 0.8 with new seeds until one
  runs cleanly and meets the docstring's examples (the information the
  cycle gets), or until the time the cycle took on that problem is spent.

The bare arms' code is extracted leniently: a function without ``self`` is
called as the plain function it is (it is given a ``self`` it never uses, by
the same repair the cycle uses), and it runs in the same sandbox. Times are
from the message (or prompt) to a method in place; the hidden tests are not
timed.

Usage: ``.venv/bin/python bench/bench_cycle.py [--suite specs stateful mandates] [--limit N] [--k 4]``;
writes ``bench/results/cycle.json`` and ``cycle.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batos.cognition.guardian.extraction import Rejected, extract_method  # noqa: E402
from batos.cognition.repairs import repair  # noqa: E402
from batos.core.errors import BatosError, MethodFault  # noqa: E402
from batos.core.image import open_image  # noqa: E402
from batos.core.txn import reading, transact  # noqa: E402
from batos.core.uvm import UvmObject  # noqa: E402
from batos.sandbox.runtime import MethodRuntime  # noqa: E402
from batos.sandbox.trial import checks_from_intent, same  # noqa: E402
from batos.schema.genesis import incarnate  # noqa: E402
from batos.substrate.embedded import EMBEDDED_DEFAULT, assemble  # noqa: E402
from batos.substrate.modelhost import HostedModel, ModelPool  # noqa: E402
from batos.wire.protocol import Error  # noqa: E402
from clients.client import KernelClient, NoAnswer, make_ping, make_send  # noqa: E402

BIN = Path(sys.executable).parent
BARE_SYSTEM = "You are a helpful coding assistant."
ARMS = ("cycle", "one-shot", "best-of-k")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- problems, one shape for both suites ------------------------------------------------


def problems(suites: list[str], limit: int | None) -> list[dict[str, Any]]:
    """Each problem: an object name and its steps; a step with an intent is where a method is learned."""
    out: list[dict[str, Any]] = []
    if "specs" in suites:
        for spec in json.loads((ROOT / "bench" / "specs.json").read_text())[:limit]:
            out.append({"suite": "specs", "name": spec["name"], "object": f"spec_{spec['name']}",
                        "steps": [{"selector": spec["selector"], "args": spec["message"], "intent": spec["spec"], "expected": None}],
                        "tests": [{"selector": spec["selector"], **t} for t in spec["tests"]]})
    if "stateful" in suites:
        for scenario in json.loads((ROOT / "bench" / "stateful.json").read_text())[:limit]:
            out.append({"suite": "stateful", "name": scenario["name"], "object": f"obj_{scenario['name']}",
                        "steps": scenario["steps"], "tests": []})
    if "mandates" in suites:
        for mandate in json.loads((ROOT / "bench" / "mandates.json").read_text())[:limit]:
            out.append({"suite": "mandates", "name": mandate["selector"], "object": f"m_{mandate['selector']}",
                        "steps": [{"selector": mandate["selector"], "args": mandate["args"], "intent": mandate["intent"],
                                   "expected": mandate["expected"]}], "tests": []})
    return out


def expected_ok(step: dict[str, Any], ok: bool, value: Any) -> bool:
    expected = step.get("expected")
    if isinstance(expected, dict) and expected.get("error"):
        return not ok
    return ok and (expected is None or same(value, expected))


def make_image(path: Path, todo: list[dict[str, Any]]) -> None:
    """Genesis, then one fresh child of genesis per problem (no state, no methods of its own)."""
    with open_image(str(path), create=True) as image:
        incarnate(image)

        def add(root: Any) -> None:
            for p in todo:
                root[p["object"]] = UvmObject(parents=(root["genesis"],), name=p["object"], description=f"bench object for {p['name']}")

        transact(image.db, add, note="bench objects")


# -- the cycle arm ------------------------------------------------------------------------


def run_cycle(todo: list[dict[str, Any]], directory: Path, threads: int) -> list[dict[str, Any]]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    image = directory / "cycle.fs"
    make_image(image, todo)
    kernel = subprocess.Popen(
        [str(BIN / "batos"), "kernel", "--image", str(image), "--endpoint", endpoint, "--no-loops", "--model-threads", str(threads)],
        stderr=open(directory / "kernel.log", "wb"),
    )
    results = []
    try:
        with KernelClient(endpoint, answer_timeout=1.0, retries=120) as client:
            client.request(make_ping(), timeout=120)
            wait_warm(client)
            for p in todo:
                steps, learn_times, ok_all = [], [], True
                for step in p["steps"]:
                    started = time.perf_counter()
                    try:
                        reply = client.request(make_send(p["object"], step["selector"], step["args"], intent=step.get("intent")), timeout=900)
                    except NoAnswer as exc:  # counted as a failure, and the run goes on
                        reply = Error(id=None, code="no_answer", message=str(exc))
                    took = time.perf_counter() - started
                    ok = reply.kind == "result"
                    value = reply.value if ok else f"{reply.code}: {reply.message[:300]}"
                    good = expected_ok(step, ok, reply.value if ok else None)
                    if step.get("intent"):
                        learn_times.append(took)
                    steps.append({"selector": step["selector"], "ok": good, "seconds": round(took, 2), "reply": value})
                    ok_all &= good
                for test in p["tests"] if ok_all else []:  # a method never learned would start a new cycle per test
                    reply = client.request(make_send(p["object"], test["selector"], test["args"], test.get("kwargs") or {}), timeout=120)
                    good = reply.kind == "result" and same(reply.value, test["expected"])
                    if not good:
                        steps.append({"test": test, "ok": False, "reply": reply.value if reply.kind == "result" else f"{reply.code}: {reply.message[:200]}"})
                    ok_all &= good
                results.append({"suite": p["suite"], "name": p["name"], "object": p["object"], "ok": ok_all,
                                "learn_seconds": learn_times, "steps": steps})
                print(f"cycle {p['suite']:<8} {p['name']:<24} {'ok ' if ok_all else 'BAD'} {sum(learn_times):6.1f}s", flush=True)
    finally:
        kernel.terminate()
        kernel.wait(120)
    cycle_stats(image, results)
    return results


def wait_warm(client: KernelClient, timeout: float = 600.0) -> None:
    """Start timing once the kernel has loaded its models and BRICK's prompt prefix,
    as the bare arms load theirs before timing."""
    deadline = time.monotonic() + timeout
    while True:
        warmth = client.request(make_ping(), timeout=60).status.get("warmth")
        if warmth not in ("cold", "warming") or time.monotonic() > deadline:
            print(f"kernel warmth: {warmth}", flush=True)
            return
        time.sleep(1.0)


def cycle_stats(image_path: Path, results: list[dict[str, Any]]) -> None:
    """From the image, after the kernel stopped: how each problem's cycles went."""
    by_object = {r["object"]: r for r in results}
    with open_image(str(image_path), read_only=True) as image, reading(image.db) as root:
        for cycle in root["orchestrator"].cycles.values():
            record = by_object.get(str(cycle.target.name))
            if record is None:
                continue
            artifacts = [dict(a) for a in cycle.artifacts]
            candidates = [a for a in artifacts if a["kind"] == "candidate"]
            verdicts = [a for a in artifacts if a["kind"] == "verdict"]
            trialled = [c for c in candidates if c.get("duplicate_of") is None]
            texts = Counter(c["text"] for c in trialled)
            first = candidates[0] if candidates else {}
            record.setdefault("cycles", []).append({
                "selector": cycle.selector, "state": str(cycle.state), "candidates": len(candidates),
                "model_calls": len(candidates) + sum(1 for a in artifacts if a["kind"] == "checks"),
                "duplicates_resampled": sum(1 for c in candidates if c.get("duplicate_of") is not None),
                "identical_retries": sum(n - 1 for n in texts.values() if n > 1),
                "first_candidate": "passed" if verdicts and verdicts[0].get("passed_intent") else "failed",
                "first_repairs": first.get("repairs") or [],
                "installed_after": (cycle.outcome or {}).get("reason", ""),
                "failure": verdicts[-1].get("failure", "") if str(cycle.state) == "FAILED" and verdicts else "",
            })


# -- the bare arms ---------------------------------------------------------------------------


def bare_prompt(p: dict[str, Any], step: dict[str, Any]) -> str:
    if p["suite"] == "specs":
        return f"Complete this Python function:\n\n{step['intent']}\nAnswer with the code only."
    params = ", ".join(["self", *(f"arg{i}" for i in range(len(step["args"])))])
    return (f"Write a Python method `def {step['selector']}({params})` for an object, which does this: {step['intent']}. "
            "Answer with the code only.")


def as_method(text: str, selector: str) -> str | None:
    """Lenient extraction: the function named *selector*, given a ``self`` if it has none."""
    fixed = repair(text, selector)
    if fixed.source is not None:
        return fixed.source
    try:
        return extract_method(text, selector)[1]
    except Rejected:
        return None


class BareRunner:
    """Runs a bare answer's methods on a fresh object of a real image, in the sandbox, with state carried."""

    def __init__(self, directory: Path) -> None:
        self.image = open_image(str(directory / "bare.fs"), create=True)
        incarnate(self.image)
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        name = f"bare_{self.count}"
        transact(self.image.db, lambda root: root.__setitem__(name, UvmObject(name=name)))
        return name

    def define(self, obj: str, selector: str, source: str) -> str | None:
        try:
            transact(self.image.db, lambda root: root[obj].define_method(selector, source, author="bare"))
            return None
        except (BatosError, SyntaxError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def call(self, obj: str, selector: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> tuple[bool, Any]:
        try:
            return True, transact(self.image.db, lambda root: getattr(root[obj], selector)(*args, **(kwargs or {})))
        except MethodFault as exc:
            return False, str(exc)[:200]
        except (BatosError, AttributeError, TypeError) as exc:
            return False, f"{type(exc).__name__}: {exc}"[:200]

    def close(self) -> None:
        self.image.close()


def run_bare(todo: list[dict[str, Any]], model: HostedModel, runner: BareRunner, *, budget: dict[str, float] | None,
             k: int) -> list[dict[str, Any]]:
    """One shot (budget None) or best-of-k within the cycle's time on each problem."""
    results = []
    for p in todo:
        obj = runner.fresh()
        steps, learn_times, ok_all = [], [], True
        for step in p["steps"]:
            started = time.perf_counter()
            if step.get("intent"):
                learned = learn_bare(p, step, model, runner, obj, budget[p["name"]] / max(1, sum(1 for s in p["steps"] if s.get("intent"))) if budget else None, k)
                learn_times.append(time.perf_counter() - started)
                if learned:
                    steps.append({"selector": step["selector"], "learn": learned})
            ok, value = runner.call(obj, step["selector"], step["args"])
            good = expected_ok(step, ok, value if ok else None)
            steps.append({"selector": step["selector"], "ok": good, "reply": value})
            ok_all &= good
        for test in p["tests"]:
            ok, value = runner.call(obj, test["selector"], test["args"], test.get("kwargs"))
            good = ok and same(value, test["expected"])
            if not good:
                steps.append({"test": test, "ok": False, "reply": value})
            ok_all &= good
        arm = "best-of-k" if budget else "one-shot"
        results.append({"suite": p["suite"], "name": p["name"], "ok": ok_all, "learn_seconds": learn_times, "steps": steps})
        print(f"{arm:<9} {p['suite']:<8} {p['name']:<24} {'ok ' if ok_all else 'BAD'} {sum(learn_times):6.1f}s", flush=True)
    return results


def learn_bare(p: dict[str, Any], step: dict[str, Any], model: HostedModel, runner: BareRunner, obj: str,
               budget: float | None, k: int) -> str | None:
    """Define the step's method on *obj* from the bare model; what went wrong, or None."""
    prompt = bare_prompt(p, step)
    examples = checks_from_intent(step["intent"])
    started = time.perf_counter()
    problem, fallback = "no function in the answer", None
    for sample in range(1 if budget is None else k):
        if budget is not None and sample > 0 and time.perf_counter() - started >= budget:
            break
        text = model.complete(BARE_SYSTEM, prompt, max_tokens=700, temperature=0.1 if budget is None else 0.8,
                              seed=None if budget is None else 1000 + sample)
        source = as_method(text, step["selector"])
        if source is None:
            continue
        if budget is None:
            return runner.define(obj, step["selector"], source)
        # best-of-k keeps the first sample that runs and meets the examples it was shown
        trial = runner.fresh()
        problem = runner.define(trial, step["selector"], source)
        if problem is not None:
            continue
        fallback = fallback or source

        def meets(example: Any) -> bool:
            ok, got = runner.call(trial, step["selector"], list(example.args), dict(example.kwargs))
            return ok and same(got, example.expected)

        if runner.call(trial, step["selector"], step["args"])[0] and all(meets(e) for e in examples):
            return runner.define(obj, step["selector"], source)
        problem = "no sample met its examples"
    if fallback is not None:  # none met them: keep the first that could be defined, as a user would
        runner.define(obj, step["selector"], fallback)
    return problem


# -- report ----------------------------------------------------------------------------------


def pick_suite(items: list[dict[str, Any]], suite: str) -> list[dict[str, Any]]:
    return [item for item in items if item["suite"] == suite]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    times = [t for r in results for t in r["learn_seconds"]]
    return {"success": sum(r["ok"] for r in results), "total": len(results),
            "success_rate": sum(r["ok"] for r in results) / max(1, len(results)),
            "median_learn_s": statistics.median(times) if times else None}


def cycle_breakdown(results: list[dict[str, Any]]) -> dict[str, Any]:
    cycles = [c for r in results for c in r.get("cycles", [])]
    return {
        "cycles": len(cycles),
        "first_candidate_passed": sum(c["first_candidate"] == "passed" for c in cycles),
        "first_candidate_repaired_and_passed": sum(c["first_candidate"] == "passed" and bool(c["first_repairs"]) for c in cycles),
        "completed_after_more_candidates": sum(c["state"] == "COMPLETE" and c["first_candidate"] == "failed" for c in cycles),
        "failed_cycles": sum(c["state"] == "FAILED" for c in cycles),
        "failures_by_class": dict(Counter(c["failure"] for c in cycles if c["failure"])),
        "identical_retries": sum(c["identical_retries"] for c in cycles),
        "duplicates_resampled": sum(c["duplicates_resampled"] for c in cycles),
        "repairs": dict(Counter(r.split(" ")[0] + " " + r.split(" ")[1] for c in cycles for r in c["first_repairs"])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", nargs="+", choices=["specs", "stateful", "mandates"], default=["specs", "stateful"],
                        help="which suites (default: specs stateful; mandates are the original one-liners)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems of each suite")
    parser.add_argument("--k", type=int, default=4, help="most samples for bare best-of-k (default 4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="model threads for every arm (default: all cores)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="which arms (default: all; best-of-k needs the cycle's times, so it needs the cycle arm)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the arms' images and the kernel's log in DIR (for `batos cycles list --image DIR/cycle.fs`)")
    args = parser.parse_args()
    if "best-of-k" in args.arms and "cycle" not in args.arms:
        parser.error("best-of-k is given the cycle's time on each problem: run it with the cycle arm")
    todo = problems(args.suite, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        cycle = run_cycle(todo, directory, args.threads) if "cycle" in args.arms else []
        runtime = MethodRuntime(size=1).install()
        pool = ModelPool(threads=args.threads)
        runner = BareRunner(directory)
        try:
            model = HostedModel(pool, EMBEDDED_DEFAULT.name, assemble())
            model.complete(BARE_SYSTEM, "Say hi.", max_tokens=4)  # load before timing, as the kernel's ping did
            one_shot = run_bare(todo, model, runner, budget=None, k=1) if "one-shot" in args.arms else []
            budget = {r["name"]: sum(r["learn_seconds"]) for r in cycle}
            best_of_k = run_bare(todo, model, runner, budget=budget, k=args.k) if "best-of-k" in args.arms else []
        finally:
            runner.close()
            pool.close()
            runtime.close()
    suites = sorted({p["suite"] for p in todo})
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
                   f"{EMBEDDED_DEFAULT.name}, {args.threads} model threads",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "k": args.k, "arms": args.arms, "suites": {},
    }
    for suite in suites:
        arms = {"cycle": pick_suite(cycle, suite), "one_shot": pick_suite(one_shot, suite), "best_of_k": pick_suite(best_of_k, suite)}
        report["suites"][suite] = {
            **{arm: summary(results) for arm, results in arms.items()},
            "cycle_breakdown": cycle_breakdown(arms["cycle"]), "per_problem": arms,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cycle.json").write_text(json.dumps(report, indent=2, default=repr) + "\n")
    lines = [f"# The cycle against the bare model ({report['when']})", "", f"{report['machine']}; best-of-k: k = {args.k}", ""]
    for suite in suites:
        s = report["suites"][suite]
        c, o, b, d = s["cycle"], s["one_shot"], s["best_of_k"], s["cycle_breakdown"]
        ratio = f" ({c['median_learn_s'] / o['median_learn_s']:.2f}x one shot)" if c["median_learn_s"] and o["median_learn_s"] else ""
        lines += [f"## {suite} ({len(pick_suite(todo, suite))} problems)", "",
                  "| arm | succeeded | rate | median time to a method |", "|---|---:|---:|---:|"]
        for arm, label, figures, extra in (("one-shot", "bare model, one shot (baseline)", o, ""),
                                           ("best-of-k", f"bare model, best-of-{args.k} at the cycle's time", b, ""),
                                           ("cycle", "cognitive cycle through the kernel", c, ratio)):
            if arm not in args.arms:
                lines.append(f"| {label} | not run | | |")
            else:
                median = f"{figures['median_learn_s']:.1f} s" if figures["median_learn_s"] is not None else "-"
                lines.append(f"| {label} | {figures['success']}/{figures['total']} | {figures['success_rate']:.0%} | {median}{extra} |")
        lines.append("")
        if "cycle" in args.arms:
            lines += [
                f"Cycle: {d['cycles']} cycles; first candidate passed {d['first_candidate_passed']} "
                f"({d['first_candidate_repaired_and_passed']} of them after shape repairs); completed after more candidates "
                f"{d['completed_after_more_candidates']}; failed {d['failed_cycles']} {d['failures_by_class'] or ''}; "
                f"byte-identical retries {d['identical_retries']}; repeats resampled {d['duplicates_resampled']}; "
                f"repairs {d['repairs'] or 'none'}.", "",
            ]
        lines += ["| problem | cycle | s | one shot | s | best-of-k | s |", "|---|---|---:|---|---:|---|---:|"]
        by_name = {arm: {r["name"]: r for r in s["per_problem"][arm]} for arm in ("cycle", "one_shot", "best_of_k")}

        def cell(arm: str, name: str) -> str:
            r = by_name[arm].get(name)
            return "- | -" if r is None else f"{'ok' if r['ok'] else 'failed'} | {sum(r['learn_seconds']):.1f}"

        for p in pick_suite(todo, suite):
            lines.append(f"| {p['name']} | {cell('cycle', p['name'])} | {cell('one_shot', p['name'])} | {cell('best_of_k', p['name'])} |")
        lines.append("")
    (args.out / "cycle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
