"""The trial's child process: run one candidate method under hard limits.

Run as ``python -I trial_child.py`` (isolated mode: no environment variables,
no user site-packages) in a fresh temporary directory. It imports nothing from
batos on purpose: the only input is a pickle from the (trusted) parent on
stdin, the only output one JSON document on stdout. Before the candidate runs,
resource limits are set and an audit hook (PEP 578, which code cannot remove)
refuses network, processes, native code, and writes outside the directory.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import resource
import sys
import traceback
import types

OUT = os.dup(1)


def emit(report: dict) -> None:
    data = json.dumps(report, default=repr).encode()
    os.write(OUT, data[: 1 << 20])
    os._exit(0)


def set_limits(cpu: int, memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.", "os.fork", "os.kill", "os.system", "pty.", "webbrowser.", "urllib.", "http.")
BLOCKED_IMPORTS = {"socket", "_socket", "subprocess", "ctypes", "_ctypes", "multiprocessing", "ssl", "_ssl", "pty", "urllib", "http"}


def install_guard(workdir: str) -> None:
    def hook(event: str, args: tuple) -> None:
        if event.startswith(BLOCKED_PREFIXES):
            raise PermissionError(f"trial: {event} is not allowed")
        if event == "import" and args and str(args[0]).split(".")[0] in BLOCKED_IMPORTS:
            raise PermissionError(f"trial: importing {args[0]} is not allowed")
        if event == "open" and args:
            path, mode = args[0], args[1] if len(args) > 1 else "r"
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if writing and not os.path.abspath(str(path)).startswith(workdir):
                raise PermissionError(f"trial: writing {path} is not allowed")
        if event in ("os.remove", "os.rename", "os.rmdir", "os.unlink", "shutil.rmtree") and args:
            if not os.path.abspath(str(args[0])).startswith(workdir):
                raise PermissionError(f"trial: {event} outside the trial directory is not allowed")

    sys.addaudithook(hook)


class Stub:
    """Stands in for another persistent object referenced from a slot."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return f"<object {self.description}>"


class Receiver:
    """A detached copy of the receiver: its slot values and its other methods."""

    def __init__(self, name: str, slots: dict, methods: dict) -> None:
        object.__setattr__(self, "_slots", slots)
        object.__setattr__(self, "_methods", methods)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, name: str):
        slots = object.__getattribute__(self, "_slots")
        if name in slots:
            return slots[name]
        methods = object.__getattribute__(self, "_methods")
        if name in methods:
            return types.MethodType(methods[name], self)
        raise AttributeError(f"{object.__getattribute__(self, '_name')} does not understand {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name != "_p_changed":
            object.__getattribute__(self, "_slots")[name] = value

    def __delattr__(self, name: str) -> None:
        del object.__getattribute__(self, "_slots")[name]

    def slot_names(self) -> list:
        return sorted(object.__getattribute__(self, "_slots"))

    def method_names(self) -> list:
        return sorted(object.__getattribute__(self, "_methods"))

    def responds_to(self, selector: str) -> bool:
        return selector in object.__getattribute__(self, "_slots") or selector in object.__getattribute__(self, "_methods")

    def describe(self) -> str:
        return object.__getattribute__(self, "_name")


def compile_function(selector: str, source: str):
    namespace = {"__name__": f"trial.{selector}"}
    exec(compile(source, f"<method {selector}>", "exec"), namespace)
    return namespace[selector]


def same(got, expected) -> bool:
    if isinstance(got, float) or isinstance(expected, float):
        try:
            return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
        except TypeError:
            return False
    if isinstance(got, tuple) and isinstance(expected, list):
        got = list(got)
    return got == expected


def describe_error(exc: BaseException) -> dict:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<method")]
    where = f" (line {frames[-1].lineno} of the method)" if frames else ""
    return {"type": type(exc).__name__, "message": f"{str(exc)[:500]}{where}"}


def main() -> None:
    payload = pickle.loads(sys.stdin.buffer.read())
    set_limits(payload["cpu_seconds"], payload["memory_bytes"])
    install_guard(os.getcwd())
    captured = io.StringIO()
    sys.stdout = captured
    report: dict = {"ok": False, "value": None, "error": None, "checks": []}
    try:
        methods = {s: compile_function(s, src) for s, src in payload["methods"].items()}
        candidate = compile_function(payload["selector"], payload["source"])
        methods[payload["selector"]] = candidate
    except BaseException as exc:  # noqa: BLE001 - the candidate's definition may raise anything
        report["error"] = describe_error(exc)
        emit(report)
    receiver = Receiver(payload["name"], copy.deepcopy(payload["slots"]), methods)
    bound = types.MethodType(candidate, receiver)
    try:
        value = bound(*payload["args"], **payload["kwargs"])
        report["value"] = repr(value)[:2000]
        report["ok"] = True
    except BaseException as exc:  # noqa: BLE001
        report["error"] = describe_error(exc)
    for check in payload["checks"]:
        entry = {"text": check["text"], "expected": repr(check["expected"])}
        try:
            fresh = Receiver(payload["name"], copy.deepcopy(payload["slots"]), methods)
            got = types.MethodType(candidate, fresh)(*check["args"], **check["kwargs"])
            entry["got"] = repr(got)[:500]
            entry["passed"] = same(got, check["expected"])
        except BaseException as exc:  # noqa: BLE001
            entry["got"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            entry["passed"] = False
        report["checks"].append(entry)
    report["stdout"] = captured.getvalue()[:2000]
    emit(report)


if __name__ == "__main__":
    main()
