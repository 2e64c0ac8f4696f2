"""LoRA training of a persona's model: ``python -m batos.substrate.training SPEC.json``.

Runs in its own process (it needs gigabytes on a real model, and a crash or
timeout must leave the kernel serving). SPEC names the base model directory
(the blob view), the examples (JSONL of ``{"system", "prompt", "completion"}``),
the output directory and the hyper-parameters. The loss is taken on the
completion tokens only. On success the adapter (peft layout) and
``metrics.json`` are in the output directory and the exit status is 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from batos.substrate.hostchild import FALLBACK_TEMPLATE


def encode(tokenizer: Any, example: dict[str, str], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 over the prompt) for one example."""
    template = None if tokenizer.chat_template else FALLBACK_TEMPLATE
    messages = [{"role": "system", "content": example["system"]}, {"role": "user", "content": example["prompt"]}]
    prompt_ids = list(tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"])
    answer_ids = tokenizer(example["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels


def train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(int(spec.get("seed", 0)))
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(spec["base"])
    kwargs: dict[str, Any] = {"device_map": {"": 0}, "dtype": torch.bfloat16} if cuda else {}
    model = AutoModelForCausalLM.from_pretrained(spec["base"], **kwargs)
    targets = [n for n in ("q_proj", "k_proj", "v_proj", "o_proj") if any(m.endswith(n) for m, _ in model.named_modules())]
    model = get_peft_model(model, LoraConfig(r=int(spec.get("rank", 8)), lora_alpha=int(spec.get("alpha", 16)), lora_dropout=0.0,
                                             target_modules=targets or None, task_type="CAUSAL_LM"))
    examples = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines() if line.strip()]
    if not examples:
        raise ValueError("no training examples")
    batches = [encode(tokenizer, e, int(spec.get("max_length", 512))) for e in examples]
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(spec.get("lr", 1e-3)))
    model.train()
    losses = []
    for step in range(int(spec.get("steps", 30))):
        ids, labels = batches[step % len(batches)]
        output = model(input_ids=torch.tensor([ids], device=model.device), labels=torch.tensor([labels], device=model.device))
        if not torch.isfinite(output.loss):
            raise FloatingPointError(f"loss became {output.loss.item()} at step {step}")
        output.loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(float(output.loss.item()))
    out = Path(spec["out"])
    model.save_pretrained(out)
    metrics = {"examples": len(examples), "steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
               "seconds": round(time.perf_counter() - started, 3), "device": "cuda" if cuda else "cpu",
               "hardware": torch.cuda.get_device_name(0) if cuda else f"{torch.get_num_threads()} CPU threads",
               "target_modules": targets}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        metrics = train(spec)
    except Exception as exc:  # noqa: BLE001 - the parent records the failure; nothing is swapped
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
