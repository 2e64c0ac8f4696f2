"""The model host process: ``python -m batos.substrate.hostchild BACKEND PATH N_CTX``.

One process holds one loaded model (a GGUF through llama-cpp-python, or a
Hugging Face model directory through transformers) and answers JSON lines on
stdin/stdout, so that unloading is ending the process — the only way memory
(VRAM above all) is reliably given back.

First line out: ``{"ready": true, "memory": BYTES, "device": ..., "quantization": ...}``
or ``{"error": ...}``. Then, per request line:

- ``{"op": "complete", "messages": [...], "max_tokens", "temperature", "stop",
  "stream", "json_schema", "seed": null | int, "avoid": [TEXT, ...], "adapter": null | {"name", "path"}}`` → zero or more
  ``{"token": TEXT}`` lines when streaming, then ``{"text", "tokens", "ttft_s"}``;
- ``{"op": "adapter", "adapter": {...}}`` → ``{"adapter": NAME, "seconds": S}``
  (load, if new, and activate a LoRA adapter on the shared base);
- any failure → ``{"error": ...}`` and the host goes on serving.

Kept to the standard library and :mod:`batos.substrate.stops`: the child must
start fast and must not open the image.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Iterator

from batos.substrate.stops import cut_at_stop, held_back

Emit = Callable[[dict[str, Any]], None]


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Avoided:
    """Token ids whose text contains any of some strings, found once per set of strings:
    a scan of the whole vocabulary (150k tokens for Qwen) takes about a second."""

    def __init__(self, text_of: Callable[[int], str], size: int) -> None:
        self.text_of = text_of
        self.size = size
        self.found: dict[tuple[str, ...], list[int]] = {}

    def tokens(self, avoid: list[str]) -> list[int]:
        key = tuple(sorted(set(avoid)))
        if key not in self.found:
            self.found[key] = [i for i in range(self.size) if any(s in self.text_of(i) for s in key)]
        return self.found[key]


def prompt_cache(capacity: int) -> Any:
    """llama-cpp-python's RAM prompt cache, holding to *capacity* bytes for real.

    Its ``LlamaRAMCache`` counts only llama.cpp's own state, but every entry also
    keeps a copy of the score matrix: up to n_batch x vocabulary float32, 311 MB
    for Qwen's 151,936 tokens, against about 20 MB of state for a 700-token prompt.
    A kernel's host grew to 14 GB resident on a 24 GB machine with a "512 MiB"
    cache. With ``logits_all`` off (ours) only the last row is ever read, and a
    restored state is decoded again before sampling anyway, so an entry keeps
    only that row, and what it holds is what is counted.
    """
    import numpy as np
    from llama_cpp import LlamaRAMCache

    class CountedRAMCache(LlamaRAMCache):  # type: ignore[misc]
        @property
        def cache_size(self) -> int:
            return sum(s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in self.cache_state.values())

        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = np.array(value.scores[-1:])  # a copy: the slice would pin the whole matrix
            super().__setitem__(key, value)

    return CountedRAMCache(capacity_bytes=capacity)


class LlamaHost:
    """A GGUF served by llama-cpp-python; JSON answers can be grammar-constrained."""

    def __init__(self, path: str, n_ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        before = resident_bytes()
        # without n_threads llama-cpp-python uses half the cores: one of two on these machines
        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.threads = self.llm.context_params.n_threads  # what llama.cpp will compute on, as it took it
        # llama.cpp reuses the evaluated prefix of the previous prompt by itself; the RAM
        # cache keeps the states of earlier prompts too, so the personas' system prompts,
        # interleaved on one host, are each evaluated once rather than on every switch
        cache_mib = int(os.environ.get("BATOS_PROMPT_CACHE_MIB", "512"))
        if cache_mib > 0:
            self.llm.set_cache(prompt_cache(cache_mib << 20))
        # mmap'd weights are only partly resident until touched: count the file too
        self.memory = max(resident_bytes() - before, os.path.getsize(path))
        self.device = "cpu"
        self.quantization = "gguf"
        self.avoided = Avoided(lambda i: self.llm.detokenize([i]).decode("utf-8", "replace"), self.llm.n_vocab())

    def adapter(self, adapter: dict[str, Any] | None) -> float:
        if adapter is not None:
            raise ValueError("LoRA adapters are served by the transformers backend; this model is a GGUF")
        return 0.0

    def stream(self, request: dict[str, Any]) -> Iterator[str]:
        self.adapter(request.get("adapter"))
        kwargs: dict[str, Any] = {"max_tokens": request["max_tokens"], "temperature": request["temperature"],
                                  "stop": request.get("stop") or None, "stream": True}
        if request.get("seed") is not None:
            kwargs["seed"] = int(request["seed"])
        if request.get("json_schema"):
            kwargs["response_format"] = {"type": "json_object", "schema": request["json_schema"]}
        if request.get("avoid"):
            kwargs["logit_bias"] = {token: -1e9 for token in self.avoided.tokens(request["avoid"])}
        for chunk in self.llm.create_chat_completion(messages=request["messages"], **kwargs):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece


FALLBACK_TEMPLATE = "{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}\n\n{% endfor %}### assistant\n"


class TransformersHost:
    """A Hugging Face model directory; NF4 4-bit on CUDA, unquantised on CPU; peft adapters on one base."""

    def __init__(self, path: str, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        torch.set_num_threads(threads)  # CPU compute; on CUDA this only bounds the host's own CPU work
        self.threads = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        kwargs: dict[str, Any] = {}
        self.quantization = None
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            kwargs["device_map"] = {"": 0}
            if os.environ.get("BATOS_QUANTIZE", "nf4") == "nf4":
                from transformers import BitsAndBytesConfig  # needs bitsandbytes: the `gpu` extra

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.bfloat16)
                self.quantization = "nf4"
            else:
                kwargs["dtype"] = torch.bfloat16
        before = resident_bytes()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        self.model.eval()
        self.device = "cuda" if cuda else "cpu"
        self.memory = torch.cuda.memory_allocated() if cuda else max(resident_bytes() - before, 1)
        self.adapters: dict[str, str] = {}
        self.active: str | None = None
        # special tokens never count as containing text: an avoided string must not ban end-of-sequence
        self.avoided = Avoided(lambda i: self.tokenizer.decode([i], skip_special_tokens=True), len(self.tokenizer))

    def adapter(self, adapter: dict[str, Any] | None) -> float:
        """Activate *adapter* (loading it once) without reloading the base; None → the bare base."""
        started = time.perf_counter()
        if adapter is None:
            self.active = None
            return 0.0
        name = adapter["name"]
        if name not in self.adapters:
            from peft import PeftModel

            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, adapter["path"], adapter_name=name)
            else:
                self.model.load_adapter(adapter["path"], adapter_name=name)
            self.model.eval()
            self.adapters[name] = adapter["path"]
        self.model.set_adapter(name)
        self.active = name
        return time.perf_counter() - started

    def stream(self, request: dict[str, Any]) -> Iterator[str]:
        import threading

        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self.adapter(request.get("adapter"))
        messages = request["messages"]
        if request.get("json_schema"):  # no grammar here: ask for JSON, the caller validates
            messages = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + "\nAnswer with one JSON object only."}]
        template = None if self.tokenizer.chat_template else FALLBACK_TEMPLATE
        inputs = self.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                    return_tensors="pt", return_dict=True).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = [s for s in request.get("stop") or [] if s]
        seen: list[str] = []

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return any(s in "".join(seen) for s in stop)

        temperature = float(request["temperature"])
        generate_kwargs = {**inputs, "max_new_tokens": int(request["max_tokens"]), "streamer": streamer,
                           "do_sample": temperature > 0, "stopping_criteria": StoppingCriteriaList([Stop()]),
                           "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if request.get("avoid"):
            generate_kwargs["suppress_tokens"] = self.avoided.tokens(request["avoid"])
        if temperature > 0:
            generate_kwargs["temperature"] = temperature
            if request.get("seed") is not None:
                self.torch.manual_seed(int(request["seed"]))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self.torch.inference_mode():
                    if self.active is None and self.adapters:
                        with self.model.disable_adapter():
                            self.model.generate(**generate_kwargs)
                    else:
                        self.model.generate(**generate_kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            seen.append(piece)
            yield piece
        worker.join()
        if failure:
            raise failure[0]


def serve(host: Any, lines: Iterator[str], out: Emit) -> None:
    for line in lines:
        try:
            request = json.loads(line)
            if request.get("op") == "adapter":
                out({"adapter": (request.get("adapter") or {}).get("name"), "seconds": host.adapter(request.get("adapter"))})
                continue
            stop = [s for s in request.get("stop") or [] if s]
            started = time.perf_counter()
            first = None
            text = ""
            sent = 0  # characters of text already streamed
            tokens = 0
            for piece in host.stream(request):
                first = first or time.perf_counter()
                tokens += 1
                text, stopped = cut_at_stop(text + piece, stop)
                # hold back a tail that may be the start of a stop sequence, so
                # the streamed pieces always add up to the final text
                safe = len(text) if stopped else len(text) - held_back(text, stop)
                if request.get("stream") and safe > sent:
                    out({"token": text[sent:safe]})
                    sent = safe
                if stopped:
                    break
            if request.get("stream") and len(text) > sent:
                out({"token": text[sent:]})
            out({"text": text, "tokens": tokens, "ttft_s": (first or started) - started,
                 "seconds": time.perf_counter() - started})
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the host
            out({"error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> int:
    backend, path, n_ctx, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    try:
        host = LlamaHost(path, n_ctx, threads) if backend == "llama.cpp" else TransformersHost(path, threads)
    except Exception as exc:  # noqa: BLE001 - the parent turns this into a ModelError
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    emit({"ready": True, "memory": host.memory, "device": host.device, "quantization": host.quantization,
          "threads": host.threads})
    serve(host, iter(sys.stdin.readline, ""), emit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
