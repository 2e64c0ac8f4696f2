"""The sandbox worker: a locked-down supervisor that forks one child per call.

Run by the kernel as ``python -I -m batos.sandbox.worker IN OUT`` (two pipe
descriptors). The supervisor imports every module a method may use, locks
itself down (:func:`batos.sandbox.lockdown.lock_supervisor`) and then, for
each call, hands the call to a child it forked *before* the call arrived.
The child runs the method and exits; nothing it did (patched modules, stray
threads, finalizers) survives into the next call.

Why two processes: the supervisor never runs stored code, so the frames it
writes to the kernel (``ready``, ``exit``) cannot be forged. The child only
holds a private pair of pipes to the supervisor, which forwards its frames to
the kernel as opaque ``child`` payloads and reports, itself, how the child
ended. The kernel judges results; a verdict never comes from the child.

The child's world (:class:`World`): the objects it was given, loaded from the
kernel on first use (``load``), as :class:`Proxy` objects whose slot writes
are recorded; method sources are compiled here with restricted builtins and
module facades. At the end it sends ``done`` with the result and every slot
that differs from what it was given.
"""

from __future__ import annotations

import builtins
import importlib
import io
import os
import select
import signal
import sys
import traceback
import types
from typing import Any, Callable

from batos.sandbox import codec, lockdown
from batos.sandbox.codec import CodecError, Opaque, read_frame, write_all
from batos.sandbox.modules import ALLOWED_MODULES, DANGEROUS_MODULES, DENIED_ATTRIBUTES, IMPLICIT_IMPORTS

# Reflection a method may use on any object it holds; the rest of a
# UvmObject's Python API (define_method, ancestors, clone ...) stays in the kernel.
REFLECTION = frozenset({"describe", "slot_names", "method_names", "responds_to"})
RUNTIME_ONLY = frozenset(
    {"define_method", "revert_method", "forget_method", "ancestors", "clone", "method_record", "_resolve", "_bound"}
)
UNSAFE_BUILTINS = frozenset(
    {"open", "exec", "eval", "compile", "input", "breakpoint", "help", "exit", "quit", "globals", "locals", "vars",
     "memoryview", "__loader__", "__spec__", "__build_class__"}
)


# -- modules as facades ----------------------------------------------------------


def facade(module: types.ModuleType) -> types.SimpleNamespace:
    """*module*'s public names, without the ones that lead out of the allow-list."""
    root = module.__name__.split(".")[0]
    denied = DENIED_ATTRIBUTES.get(root, frozenset())
    names: dict[str, Any] = {}
    for name in dir(module):
        if name.startswith("_") or name in denied or name in DANGEROUS_MODULES:
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            parts = value.__name__.split(".")
            if parts[0] not in ALLOWED_MODULES or any(p in DANGEROUS_MODULES for p in parts):
                continue
            value = facade(value) if value is not module else None
            if value is None:
                continue
        names[name] = value
    return types.SimpleNamespace(**names)


def build_facades() -> dict[str, types.SimpleNamespace]:
    facades = {name: facade(importlib.import_module(name)) for name in sorted(ALLOWED_MODULES)}
    for name, entry_points in IMPLICIT_IMPORTS.items():  # imported now: the locked-down child can read no more source
        module = importlib.import_module(name)
        facades[name] = types.SimpleNamespace(**{entry: getattr(module, entry) for entry in entry_points})
    return facades


FACADES: dict[str, types.SimpleNamespace] = {}


def safe_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    root = name.split(".")[0]
    if level != 0 or root not in FACADES:
        raise ImportError(f"importing {name!r} is not allowed in a method")
    module: Any = FACADES[root]
    if fromlist or "." not in name:
        for part in name.split(".")[1:]:
            module = getattr(module, part, None)
            if module is None:
                raise ImportError(f"importing {name!r} is not allowed in a method")
        return module
    return FACADES[root]


def method_builtins() -> dict[str, Any]:
    table = {k: v for k, v in vars(builtins).items() if k not in UNSAFE_BUILTINS}
    table["__import__"] = safe_import
    return table


# -- the child's world ------------------------------------------------------------


class CallFailed(Exception):
    """The call cannot go on (a protocol error with the kernel)."""


class World:
    """The objects one call has seen, their original encoded slots, and what changed."""

    def __init__(self, channel: "Channel") -> None:
        self.channel = channel
        self.states: dict[str, dict[str, Any]] = {}
        self.original: dict[str, dict[str, bytes]] = {}
        self.assigned: dict[str, set[str]] = {}
        self.marked: set[str] = set()
        self.proxies: dict[str, Proxy] = {}
        self.compiled: dict[tuple[str, str], Callable[..., Any]] = {}
        self.builtins = method_builtins()

    def proxy(self, oid: str) -> "Proxy":
        found = self.proxies.get(oid)
        if found is None:
            found = self.proxies[oid] = Proxy(self, oid)
        return found

    def add_state(self, oid: str, state: dict[str, Any]) -> None:
        slots = codec.decode(state["slots"], self.proxy)
        self.states[oid] = {"slots": slots, "methods": dict(state["methods"]), "name": state["name"], "description": state["description"]}
        self.original[oid] = {k: self._packed(v) for k, v in slots.items()}

    def state(self, oid: str) -> dict[str, Any]:
        if oid not in self.states:
            reply = self.channel.request({"op": "load", "oid": oid})
            if reply.get("op") != "state":
                raise LookupError(str(reply.get("message", "the kernel refused to load the object")))
            self.add_state(oid, reply["state"])
        return self.states[oid]

    def _packed(self, value: Any) -> bytes:
        return codec.pack({"op": "v", "v": codec.encode(value, self.oid_of)})

    def oid_of(self, value: Any) -> str | None:
        return value._oid if type(value) is Proxy else None

    def lookup(self, oid: str, name: str) -> Any:
        """Slot, then method, on the object and then its parents depth-first."""
        seen: set[str] = set()
        stack = [oid]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            state = self.state(current)
            if name in state["slots"]:
                return state["slots"][name]
            source = state["methods"].get(name)
            if source is not None:
                return types.MethodType(self.function(current, name, source), self.proxy(oid))
            parents = state["slots"].get("parents", ())
            stack.extend(p._oid for p in reversed(parents) if type(p) is Proxy)
        raise AttributeError(f"{self.state(oid)['name']} does not understand {name!r}")

    def function(self, oid: str, selector: str, source: str) -> Callable[..., Any]:
        key = (oid, selector)
        func = self.compiled.get(key)
        if func is None:
            namespace: dict[str, Any] = {"__builtins__": self.builtins, "__name__": f"method.{selector}"}
            exec(compile(source, f"<method {selector}>", "exec"), namespace)  # noqa: S102 - this process is the sandbox
            func = self.compiled[key] = namespace[selector]
        return func

    def changes(self) -> dict[str, dict[str, Any]]:
        """Per object: slots whose encoding differs from what was given, deleted
        slots, and whether the change was assigned or marked (the Covenant)."""
        out: dict[str, dict[str, Any]] = {}
        for oid, state in self.states.items():
            before = self.original[oid]
            slots = state["slots"]
            changed = {}
            for name, value in slots.items():
                if isinstance(value, Opaque):
                    continue
                try:
                    packed = self._packed(value)
                except CodecError as exc:
                    raise CodecError(f"slot {name!r}: {exc}") from None
                if before.get(name) != packed:
                    changed[name] = codec.encode(value, self.oid_of)
            deleted = sorted(set(before) - set(slots))
            if changed or deleted:
                out[oid] = {
                    "slots": changed, "deleted": deleted,
                    "assigned": sorted(self.assigned.get(oid, set())), "marked": oid in self.marked,
                }
        return out


class Proxy:
    """Stands for an object in the image; a method's ``self`` is one."""

    __slots__ = ("_world", "_oid")

    def __init__(self, world: World, oid: str) -> None:
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_oid", oid)

    def __getattr__(self, name: str) -> Any:
        world: World = object.__getattribute__(self, "_world")
        oid = object.__getattribute__(self, "_oid")
        if name == "_p_changed":
            return oid in world.marked
        if name.startswith("_") or name in RUNTIME_ONLY:
            raise AttributeError(f"{name!r} is not available to stored methods: only a cycle or the Architect changes methods")
        if name in REFLECTION:
            return types.MethodType(_REFLECTION[name], self)
        return world.lookup(oid, name)

    def __setattr__(self, name: str, value: Any) -> None:
        world: World = object.__getattribute__(self, "_world")
        oid = object.__getattribute__(self, "_oid")
        if name == "_p_changed":
            if value:
                world.marked.add(oid)
            return
        if not name.isidentifier() or name.startswith("_") or name in REFLECTION or name in RUNTIME_ONLY:
            raise AttributeError(f"cannot set {name!r}: slot names are plain identifiers not starting with '_'")
        world.state(oid)["slots"][name] = value
        world.assigned.setdefault(oid, set()).add(name)

    def __delattr__(self, name: str) -> None:
        world: World = object.__getattribute__(self, "_world")
        oid = object.__getattribute__(self, "_oid")
        slots = world.state(oid)["slots"]
        if name == "parents" or name not in slots:
            raise AttributeError(f"no removable slot {name!r}")
        del slots[name]
        world.assigned.setdefault(oid, set()).add(name)

    def __repr__(self) -> str:
        world: World = object.__getattribute__(self, "_world")
        return f"<object {world.state(object.__getattribute__(self, '_oid'))['name']}>"


def _describe(self: Proxy) -> str:
    return str(self._world.state(self._oid)["description"])


def _slot_names(self: Proxy) -> list[str]:
    return sorted(self._world.state(self._oid)["slots"])


def _method_names(self: Proxy) -> list[str]:
    return sorted(self._world.state(self._oid)["methods"])


def _responds_to(self: Proxy, selector: str) -> bool:
    try:
        self._world.lookup(self._oid, selector)
    except AttributeError:
        return False
    return True


_REFLECTION = {"describe": _describe, "slot_names": _slot_names, "method_names": _method_names, "responds_to": _responds_to}


# -- framing ---------------------------------------------------------------------------


class Channel:
    """The child's pipes to the supervisor."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, message: dict[str, Any]) -> None:
        write_all(self.write_fd, codec.pack(message))

    def receive(self) -> dict[str, Any]:
        return codec.unpack(read_frame(self.read_fd))

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.receive()


# -- the child ----------------------------------------------------------------------------


def describe_error(exc: BaseException) -> dict[str, Any]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<method")]
    where = frames[-1] if frames else None
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:1000],
        "line": where.lineno if where else None,
        "method": where.filename[len("<method "):-1] if where else None,
    }


def run_child(channel: Channel, protections: lockdown.Protections) -> None:
    """Serve exactly one call, then exit."""
    lockdown.lock_child(protections)
    request = channel.receive()
    limits = request["limits"]
    lockdown.set_call_limits(int(limits["cpu_seconds"]), int(limits["memory_bytes"]))
    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    world = World(channel)
    reply: dict[str, Any] = {"op": "done", "ok": False}
    try:
        for oid, state in request["objects"].items():
            world.add_state(oid, state)
        receiver = request["receiver"]
        if request.get("override"):
            world.states[receiver]["methods"].update(request["override"])
        method = world.lookup(receiver, request["selector"])
        args = codec.decode(request["args"], world.proxy)
        kwargs = codec.decode(request["kwargs"], world.proxy)
        value = method(*args, **kwargs)
        reply.update(ok=True, value=codec.encode(value, world.oid_of, fallback=True), changes=world.changes())
    except BaseException as exc:  # noqa: BLE001 - the method may raise anything, SystemExit included
        reply.update(ok=False, error=describe_error(exc))
    reply["stdout"] = captured.getvalue()[:10_000]
    channel.send(reply)
    os._exit(0)


# -- the supervisor ---------------------------------------------------------------------------


class Supervisor:
    def __init__(self, from_kernel: int, to_kernel: int, protections: lockdown.Protections) -> None:
        self.from_kernel, self.to_kernel = from_kernel, to_kernel
        self.protections = protections
        self.child: tuple[int, int, int] | None = None  # pid, its reading end's writer, its writing end's reader

    def send(self, message: dict[str, Any]) -> None:
        write_all(self.to_kernel, codec.pack(message))

    def prefork(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for fd in (self.from_kernel, self.to_kernel, to_child_w, from_child_r):
                    os.close(fd)
                run_child(Channel(to_child_r, from_child_w), self.protections)
            finally:
                os._exit(70)
        os.close(to_child_r)
        os.close(from_child_w)
        self.child = (pid, to_child_w, from_child_r)

    def serve(self) -> None:
        self.prefork()
        self.send({"op": "ready", "pid": os.getpid(), "protections": self.protections.as_dict()})
        while True:
            try:
                frame = read_frame(self.from_kernel)
            except EOFError:
                self.kill_child()
                return
            message = codec.unpack(frame)
            if message["op"] == "call":
                self.relay(frame)
                self.prefork()
                self.send({"op": "ready"})
            elif message["op"] == "stop":
                self.kill_child()
                return

    def relay(self, call: bytes) -> None:
        """Forward the call and everything after it until the child is gone."""
        assert self.child is not None
        pid, to_child, from_child = self.child
        reason = None
        try:
            write_all(to_child, codec.HEADER.pack(len(call)) + call)
            while True:
                ready, _, _ = select.select([from_child, self.from_kernel], [], [])
                if from_child in ready:
                    try:
                        payload = read_frame(from_child)
                    except EOFError:
                        break
                    self.send({"op": "child", "data": payload})
                if self.from_kernel in ready:
                    frame = read_frame(self.from_kernel)
                    if codec.unpack(frame)["op"] == "kill":
                        reason = "killed"
                        break
                    write_all(to_child, codec.HEADER.pack(len(frame)) + frame)
        except (CodecError, OSError) as exc:
            reason = f"protocol: {exc}"
        os.kill(pid, signal.SIGKILL)  # done or not: nothing of it may outlive the call
        _, status, usage = os.wait4(pid, 0)
        os.close(to_child)
        os.close(from_child)
        self.child = None
        self.send({
            "op": "exit",
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
            "maxrss_kb": usage.ru_maxrss,
            "reason": reason,
        })

    def kill_child(self) -> None:
        if self.child is not None:
            os.kill(self.child[0], signal.SIGKILL)
            os.waitpid(self.child[0], 0)
            self.child = None


def main(argv: list[str]) -> None:
    from_kernel, to_kernel = int(argv[0]), int(argv[1])
    unsafe = "--unprotected" in argv
    sys.dont_write_bytecode = True
    FACADES.update(build_facades())
    found = lockdown.probe()
    protections = lockdown.Protections(seccomp=False, landlock_abi=0, no_new_privs=False, rlimits=True) if unsafe else found
    if unsafe:
        lockdown.close_other_fds([from_kernel, to_kernel])
    else:
        lockdown.lock_supervisor([from_kernel, to_kernel], protections, lockdown.read_paths())
    Supervisor(from_kernel, to_kernel, protections).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
