"""Model hosts: one child process per loaded model, under a memory budget.

llama.cpp does not reliably give memory back on ``del`` (VRAM especially), so
a model that must make room is unloaded by ending its process, which always
returns its memory. The pool keeps the least-recently-used models out of a
budget (GPU memory when CUDA is present, RAM otherwise; 8 GiB by default). A
swap is serialised by a lock — requests wait while it happens — and a model
that fails to load leaves the models already loaded serving.

The child (:mod:`batos.substrate.hostchild`) speaks JSON lines over its stdin/stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from batos.substrate.llm import ModelError

DEFAULT_BUDGET = 8 << 30
TokenSink = Callable[[str], None]


def detect_device() -> str:
    """"cuda" when torch sees a GPU (the budget is then GPU memory), else "cpu"."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def footprint(path: Path) -> int:
    """Bytes on disk of a model file or directory: the estimate a budget check uses before loading."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass
class Host:
    name: str
    backend: str
    path: Path
    size: int  # memory the host reported once loaded (GPU memory on CUDA), at least its footprint estimate
    process: subprocess.Popen[str]
    info: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _exchange(self, request: dict[str, Any], on_token: TokenSink | None = None) -> dict[str, Any]:
        with self.lock:
            if self.process.poll() is not None:
                raise ModelError(f"the host of {self.name} has exited ({self.process.returncode})")
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            while True:
                line = self.process.stdout.readline()
                if not line:
                    raise ModelError(f"the host of {self.name} died while answering")
                answer = json.loads(line)
                if "token" not in answer:
                    break
                if on_token is not None:
                    on_token(answer["token"])
        if "error" in answer:
            raise ModelError(f"{self.name}: {answer['error']}")
        return answer

    def ask(self, request: dict[str, Any], on_token: TokenSink | None = None) -> dict[str, Any]:
        """One completion; streamed pieces go to *on_token* as they come."""
        return self._exchange({"op": "complete", **request, "stream": on_token is not None}, on_token)

    def use_adapter(self, adapter: dict[str, str] | None) -> float:
        """Activate a LoRA adapter on this host's base (loaded once); seconds it took."""
        return float(self._exchange({"op": "adapter", "adapter": adapter})["seconds"])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class ModelPool:
    """Loaded models by key, least recently used first."""

    def __init__(self, budget: int = DEFAULT_BUDGET, n_ctx: int = 4096, load_timeout: float = 300.0, device: str | None = None,
                 threads: int | None = None) -> None:
        self.budget = budget
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1  # llama.cpp hosts compute on this many cores
        self.load_timeout = load_timeout
        self.device = device or detect_device()
        self._hosts: OrderedDict[str, Host] = OrderedDict()
        self._swap = threading.Lock()
        self.closed = False  # a late caller (the kernel's warm-up thread) must not start a host after close
        self.swaps: deque[dict[str, Any]] = deque(maxlen=20)

    @property
    def used(self) -> int:
        return sum(h.size for h in self._hosts.values())

    def host(self, name: str, path: Path, backend: str = "llama.cpp") -> Host:
        """The running host for *name*, loading it (and evicting others) if needed."""
        with self._swap:
            if self.closed:
                raise ModelError("the model pool is closed: the kernel is stopping")
            host = self._hosts.get(name)
            if host is not None and host.process.poll() is None:
                self._hosts.move_to_end(name)
                return host
            if backend == "llama.cpp" and not path.is_file() or backend == "transformers" and not (path / "config.json").is_file():
                raise ModelError(f"model file missing: {path}")
            size = footprint(path)
            if size > self.budget:
                raise ModelError(f"{name} needs {size} bytes, more than the whole budget of {self.budget}")
            started = time.monotonic()
            evicted = []
            while self._hosts and self.used + size > self.budget:
                old_name, old = self._hosts.popitem(last=False)
                old.stop()
                evicted.append(old_name)
            new = self._start(name, path, backend, size)  # raises on failure; nothing else is touched
            self._hosts[name] = new
            self.swaps.append({"loaded": name, "evicted": evicted, "seconds": round(time.monotonic() - started, 3),
                               "memory": new.size, "device": new.info.get("device")})
            return new

    def _start(self, name: str, path: Path, backend: str, estimate: int) -> Host:
        process = subprocess.Popen([sys.executable, "-m", "batos.substrate.hostchild", backend, str(path.resolve()), str(self.n_ctx),
                                    str(self.threads)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        result: dict[str, Any] = {}

        def read_first() -> None:
            assert process.stdout is not None
            line = process.stdout.readline()
            result.update(json.loads(line) if line.strip() else {"error": f"the host exited ({process.poll()})"})

        reader = threading.Thread(target=read_first, daemon=True)
        reader.start()
        reader.join(self.load_timeout)
        if not result.get("ready"):
            process.kill()
            process.wait()
            raise ModelError(f"cannot load {name}: {result.get('error', f'no answer within {self.load_timeout:g}s')}")
        measured = int(result.get("memory") or 0)
        # on a GPU the measured allocation is the truth (NF4 is far smaller than the file)
        size = measured if result.get("device") == "cuda" and measured else max(measured, estimate)
        return Host(name, backend, path, size, process, info=result)

    def loaded(self) -> list[str]:
        return [n for n, h in self._hosts.items() if h.process.poll() is None]

    def status(self) -> dict[str, Any]:
        return {"loaded": self.loaded(), "used_bytes": self.used, "budget_bytes": self.budget, "device": self.device,
                "hosts": {n: {"memory": h.size, "backend": h.backend, **{k: h.info.get(k) for k in ("device", "quantization", "threads")}}
                          for n, h in self._hosts.items()},
                "recent_swaps": list(self.swaps)}

    def close(self) -> None:
        with self._swap:
            self.closed = True
            for host in self._hosts.values():
                host.stop()
            self._hosts.clear()


class HostedModel:
    """A TextModel whose completions run in the pool's host process for it.

    *key* names the loaded version in the pool (a cycle's pinned model and a
    newer import of the same name are different keys); *adapter* is the LoRA
    adapter ({"name", "path"}) switched on for this model's requests, on the
    same base host as every other adapter of that base.
    """

    def __init__(self, pool: ModelPool, name: str, path: Path, backend: str = "llama.cpp", *,
                 key: str | None = None, adapter: dict[str, str] | None = None) -> None:
        self.pool = pool
        self.name = name
        self.path = path
        self.backend = backend
        self.key = key or name
        self.adapter = adapter
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self.key in self.pool.loaded()

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2,
                 json_schema: dict[str, Any] | None = None, stop: list[str] | None = None,
                 on_token: TokenSink | None = None, seed: int | None = None, avoid: list[str] | None = None) -> str:
        host = self.pool.host(self.key, self.path, self.backend)
        self.calls += 1
        answer = host.ask({"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                           "max_tokens": max_tokens, "temperature": temperature, "json_schema": json_schema,
                           "stop": list(stop or []), "adapter": self.adapter, "seed": seed,
                           "avoid": list(avoid or [])}, on_token)
        return str(answer["text"])
