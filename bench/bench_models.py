"""Model loading from its blob in the image vs from a plain directory, same run,
plus the embedded model's time to first token and tokens/s on this machine.

Usage: ``.venv/bin/python bench/bench_models.py``; writes
``bench/results/models.json`` and ``models.md``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from llama_cpp import Llama  # noqa: E402

from batos.embedded import EMBEDDED_DEFAULT, assemble  # noqa: E402
from batos.genesis import incarnate  # noqa: E402
from batos.image import open_image  # noqa: E402
from batos.models import ensure_embedded  # noqa: E402


def load_seconds(path: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        llm = Llama(model_path=str(path), n_ctx=2048, verbose=False)
        times.append(time.perf_counter() - started)
        del llm
    return statistics.median(times)


def generation(path: Path) -> dict[str, float]:
    llm = Llama(model_path=str(path), n_ctx=2048, verbose=False)
    messages = [{"role": "user", "content": "Write a Python function that reverses a string, with a docstring."}]
    started = time.perf_counter()
    first = None
    tokens = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=128, temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter()
            tokens += 1
    total = time.perf_counter() - started
    return {"ttft_s": (first or started) - started, "tokens": tokens, "tokens_per_s": tokens / max(total - ((first or started) - started), 1e-9)}


def main() -> int:
    plain = assemble()
    with tempfile.TemporaryDirectory() as tmp, open_image(str(Path(tmp) / "m.fs"), create=True) as image:
        incarnate(image)
        blob = ensure_embedded(image, plain).path
        results = {
            "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "model": EMBEDDED_DEFAULT.name,
            "load_plain_dir_s": load_seconds(plain),
            "load_blob_s": load_seconds(blob),
            "generation": generation(blob),
        }
    results["blob_over_plain"] = results["load_blob_s"] / results["load_plain_dir_s"]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(results, indent=2) + "\n")
    g = results["generation"]
    lines = [
        f"# Model benchmark ({results['when']}, {results['machine']}, {results['model']})",
        "",
        "| load (median of 3) | seconds |",
        "|---|---:|",
        f"| from a plain directory (baseline) | {results['load_plain_dir_s']:.2f} |",
        f"| from its committed blob in the image | {results['load_blob_s']:.2f} (ratio {results['blob_over_plain']:.2f}) |",
        "",
        f"llama.cpp backend, 2 CPU cores: time to first token {g['ttft_s']:.2f} s, {g['tokens_per_s']:.1f} tokens/s ({g['tokens']} tokens).",
    ]
    (out / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
