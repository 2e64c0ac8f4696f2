"""Model hosts: one child process per loaded model, under a memory budget.

llama.cpp does not reliably give memory back on ``del`` (VRAM especially), so
a model that must make room is unloaded by ending its process, which always
returns its memory. The pool keeps the least-recently-used models out of a
budget (GPU memory when CUDA is present, RAM otherwise; 8 GiB by default). A
swap is serialised by a lock — requests wait while it happens — and a model
that fails to load leaves the models already loaded serving.

The child speaks JSON lines over its stdin/stdout: one request, one answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .llm import ModelError

DEFAULT_BUDGET = 8 << 30

CHILD = r'''
import json, sys
from llama_cpp import Llama
path, n_ctx = sys.argv[1], int(sys.argv[2])
try:
    llm = Llama(model_path=path, n_ctx=n_ctx, verbose=False)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    sys.exit(1)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    try:
        kwargs = {"max_tokens": request["max_tokens"], "temperature": request["temperature"]}
        if request.get("json_schema"):
            kwargs["response_format"] = {"type": "json_object", "schema": request["json_schema"]}
        answer = llm.create_chat_completion(messages=request["messages"], **kwargs)
        print(json.dumps({"text": answer["choices"][0]["message"]["content"] or ""}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
'''


@dataclass
class Host:
    name: str
    path: Path
    size: int
    process: subprocess.Popen[str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(self, request: dict[str, Any]) -> str:
        with self.lock:
            if self.process.poll() is not None:
                raise ModelError(f"the host of {self.name} has exited ({self.process.returncode})")
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise ModelError(f"the host of {self.name} died while answering")
        answer = json.loads(line)
        if "error" in answer:
            raise ModelError(f"{self.name}: {answer['error']}")
        return str(answer["text"])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class ModelPool:
    """Loaded models by name, least recently used first."""

    def __init__(self, budget: int = DEFAULT_BUDGET, n_ctx: int = 4096, load_timeout: float = 300.0) -> None:
        self.budget = budget
        self.n_ctx = n_ctx
        self.load_timeout = load_timeout
        self._hosts: OrderedDict[str, Host] = OrderedDict()
        self._swap = threading.Lock()
        self.swaps: deque[dict[str, Any]] = deque(maxlen=20)

    @property
    def used(self) -> int:
        return sum(h.size for h in self._hosts.values())

    def host(self, name: str, path: Path) -> Host:
        """The running host for *name*, loading it (and evicting others) if needed."""
        with self._swap:
            host = self._hosts.get(name)
            if host is not None and host.process.poll() is None:
                self._hosts.move_to_end(name)
                return host
            if not path.is_file():
                raise ModelError(f"model file missing: {path}")
            size = path.stat().st_size
            if size > self.budget:
                raise ModelError(f"{name} needs {size} bytes, more than the whole budget of {self.budget}")
            started = time.monotonic()
            evicted = []
            while self._hosts and self.used + size > self.budget:
                old_name, old = self._hosts.popitem(last=False)
                old.stop()
                evicted.append(old_name)
            new = self._start(name, path, size)  # raises on failure; nothing else is touched
            self._hosts[name] = new
            self.swaps.append({"loaded": name, "evicted": evicted, "seconds": round(time.monotonic() - started, 3)})
            return new

    def _start(self, name: str, path: Path, size: int) -> Host:
        process = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(self.n_ctx)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
        return Host(name, path, size, process)

    def loaded(self) -> list[str]:
        return [n for n, h in self._hosts.items() if h.process.poll() is None]

    def status(self) -> dict[str, Any]:
        return {"loaded": self.loaded(), "used_bytes": self.used, "budget_bytes": self.budget, "recent_swaps": list(self.swaps)}

    def close(self) -> None:
        with self._swap:
            for host in self._hosts.values():
                host.stop()
            self._hosts.clear()


class HostedModel:
    """A TextModel whose completions run in the pool's host process for it."""

    def __init__(self, pool: ModelPool, name: str, path: Path) -> None:
        self.pool = pool
        self.name = name
        self.path = path
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self.name in self.pool.loaded()

    def complete(self, system: str, prompt: str, *, max_tokens: int = 512, temperature: float = 0.2, json_schema: dict[str, Any] | None = None) -> str:
        host = self.pool.host(self.name, self.path)
        self.calls += 1
        return host.ask({"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                         "max_tokens": max_tokens, "temperature": temperature, "json_schema": json_schema})
