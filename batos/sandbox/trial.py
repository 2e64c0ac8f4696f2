"""The trial: run an audited candidate in a child process before installing it.

The child (:mod:`batos.sandbox.trial_child`) gets a *detached copy* of the receiver's
slot values (plain data; other persistent objects become stubs), the sources
of the methods the receiver already understands, and the message's own
arguments. It runs under CPU-time and address-space limits, a wall-clock
time-out enforced here by killing its process group, in a temporary working
directory, with an audit hook refusing network, processes and writes
elsewhere. An infinite loop or a memory bomb ends the child, never the kernel.

Examples in the intent ("``>>> f(2)`` / ``4``", "``f(2) == 4``", "for example
f(2) returns 4") become checks the trial runs as well.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batos.core.uvm import UvmObject
from batos.core.refs import name_of

CHILD = Path(__file__).with_name("trial_child.py")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5
    memory_bytes: int = 512 << 20
    wall_seconds: float = 10.0


@dataclass(frozen=True)
class Check:
    text: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any


@dataclass
class TrialResult:
    ok: bool
    value: str | None = None
    error: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.ok and all(c.get("passed") for c in self.checks)

    def feedback(self) -> str:
        lines = []
        if self.error:
            lines.append(f"Calling it with the message's arguments failed: {self.error}")
        for check in self.checks:
            if not check.get("passed"):
                lines.append(f"Check failed: {check['text']} -> expected {check['expected']}, got {check.get('got')}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "value": self.value, "error": self.error, "checks": self.checks, "duration_s": round(self.duration_s, 3)}


# -- checks from the intent ------------------------------------------------------

_CALL = r"([A-Za-z_]\w*)\(([^()]*(?:\([^()]*\)[^()]*)*)\)"
_LITERAL = r"(-?[\d.]+(?:e-?\d+)?|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|True|False|None)"
_INLINE = re.compile(_CALL + r"\s*(?:==|->|=>|returns|should return|gives|is|equals)\s*" + _LITERAL)
_DOCTEST = re.compile(r">>>\s*(?:\w+\.)?" + _CALL + r"\s*\n\s*(.+)")


def _parse_call(args_text: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    try:
        call = ast.parse(f"f({args_text})", mode="eval").body
        assert isinstance(call, ast.Call)
        return tuple(ast.literal_eval(a) for a in call.args), {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (SyntaxError, ValueError, AssertionError, TypeError):
        return None


def checks_from_intent(intent: str | None) -> list[Check]:
    """Examples the Architect wrote into the intent, as calls with expected results."""
    if not intent:
        return []
    found: list[Check] = []
    for pattern in (_DOCTEST, _INLINE):
        for match in pattern.finditer(intent):
            _name, args_text, expected_text = match.groups()
            call = _parse_call(args_text)
            try:
                expected = ast.literal_eval(expected_text.strip().rstrip(".,;"))
            except (SyntaxError, ValueError):
                continue
            if call is not None:
                check = Check(match.group(0).strip(), call[0], call[1], expected)
                if check not in found:
                    found.append(check)
    return found


# -- the detached receiver -------------------------------------------------------


def detach(value: Any, depth: int = 0) -> Any:
    """Plain-data copy of a slot value; persistent objects become stubs."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if depth > 20:
        return _stub(repr(value)[:80])
    if isinstance(value, UvmObject):
        return _stub(value.describe()[:80])
    if isinstance(value, Mapping) or type(value).__module__.startswith("BTrees"):
        return {detach(k, depth + 1): detach(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "PersistentList":
        items = [detach(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, Set):
        return {detach(v, depth + 1) for v in value}
    try:
        pickle.dumps(value)
        return value
    except Exception:  # noqa: BLE001 - unpicklable: the trial gets a description
        return _stub(repr(value)[:80])


def _stub(description: str) -> Any:
    # Built by the child: it has its own Stub class and never imports batos.
    return _StubMarker(description)


class _StubMarker:
    def __init__(self, description: str) -> None:
        self.description = description

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_child_stub, (self.description,))


def _make_child_stub(description: str) -> Any:
    main = sys.modules.get("__main__")
    return main.Stub(description) if main is not None and hasattr(main, "Stub") else description


def snapshot(receiver: UvmObject, selector: str) -> dict[str, Any]:
    """What the child needs of the receiver: name, slot copies, other methods' sources."""
    methods: dict[str, str] = {}
    for obj in receiver.ancestors():
        for name in obj.method_names():
            if name != selector and name not in methods:
                methods[name] = obj.method_record(name).source
    slots = {k: detach(getattr(receiver, k)) for k in receiver.slot_names() if k != "parents"}
    return {"name": name_of(receiver), "slots": slots, "methods": methods}


# -- running it -------------------------------------------------------------------


def run_trial(
    selector: str,
    source: str,
    receiver: dict[str, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    checks: list[Check] = (),  # type: ignore[assignment]
    limits: Limits = Limits(),
) -> TrialResult:
    payload = pickle.dumps(
        {
            **receiver,
            "selector": selector,
            "source": source,
            "args": list(args),
            "kwargs": dict(kwargs),
            "checks": [{"text": c.text, "args": c.args, "kwargs": c.kwargs, "expected": c.expected} for c in checks],
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
        }
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="batos-trial-") as workdir:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", "HOME": workdir},
            start_new_session=True,  # its own process group: killed as a whole
        )
        try:
            out, err = proc.communicate(payload, timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return TrialResult(False, error=f"timed out after {limits.wall_seconds:g}s (wall clock); is there an endless loop?", duration_s=time.monotonic() - started)
    duration = time.monotonic() - started
    if proc.returncode < 0:
        sig = -proc.returncode
        why = {signal.SIGXCPU: f"exceeded the CPU time limit of {limits.cpu_seconds}s", signal.SIGKILL: "was killed (CPU or memory limit)"}.get(sig, f"died with signal {sig}")
        return TrialResult(False, error=f"the trial process {why}", duration_s=duration)
    try:
        report = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return TrialResult(False, error=f"the trial produced no readable result ({tail[0][:300]})", duration_s=duration)
    error = report.get("error")
    return TrialResult(
        bool(report.get("ok")),
        value=report.get("value"),
        error=f"{error['type']}: {error['message']}" if error else None,
        checks=report.get("checks", []),
        duration_s=duration,
    )
