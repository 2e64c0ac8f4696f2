"""The kernel's side of the sandbox: a warm pool of workers and one call at a time on each.

A stored method never runs in the kernel. :meth:`MethodRuntime.run` sends a
worker (:mod:`batos.sandbox.worker`) what the call needs: the receiver and its
ancestors (slots as plain data, other objects as references, own methods as
source) and the arguments. Other objects the method reaches through those
references are loaded on demand, and only those: a reference the call was
never given is refused. The worker sends back the result and every slot that
changed; the runtime validates them (plain data, references to given
objects, valid slot names) and applies them to the live objects, in the
caller's transaction. So a method can read and change the objects it holds
and call their methods (which run in the same worker, on the same copies),
and nothing else: no ``_p_jar``, no root, no other object's code, no method
installed, reverted or forgotten.

Limits per call (:class:`MethodLimits`): CPU seconds and address space are
rlimits in the worker's child, wall-clock time is enforced here (the
supervisor kills the child on request). A call past a limit ends with a
:class:`~batos.core.errors.MethodFault` (``method_timeout``,
``method_memory``, ``method_killed``); its changes are discarded and the
worker's next child takes the next call.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Set
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from batos.core.errors import ErrorCode, InvalidName, MethodFault, MethodsNotRunnable
from batos.core.hooks import HOOKS
from batos.core.refs import name_of, oid_hex
from batos.core.uvm import MethodRecord, UvmObject, check_selector
from batos.sandbox import codec, lockdown
from batos.sandbox.codec import CodecError, Described, Opaque

log = logging.getLogger(__name__)
Events = Callable[..., None]  # (event, **fields): the metalog's record
UNSAFE_FLAG = "--unsafe-unsandboxed-methods"


@dataclass(frozen=True)
class MethodLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 512 << 20

    def merged(self, override: Mapping[str, Any] | None) -> "MethodLimits":
        if not override:
            return self
        known = {k: v for k, v in override.items() if k in ("wall_seconds", "cpu_seconds", "memory_bytes")}
        return replace(self, **known)


def limits_for(receiver: UvmObject, selector: str, default: MethodLimits) -> MethodLimits:
    """The receiver's own limits (``batos methods limits``): per selector, then ``*``."""
    table = receiver.__dict__.get("_limits") or {}
    return default.merged(table.get("*")).merged(table.get(selector))


class WorkerLost(Exception):
    """The worker's supervisor stopped answering; it is discarded."""


# -- one worker -------------------------------------------------------------------


class Worker:
    """A supervisor process and the pipes to it; used by one thread at a time."""

    def __init__(self, unprotected: bool = False, start_timeout: float = 60.0) -> None:
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        command = [sys.executable, "-I", "-m", "batos.sandbox.worker", str(to_worker_r), str(from_worker_w)]
        if unprotected:
            command.append("--unprotected")
        self.proc = subprocess.Popen(
            command, pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            cwd="/", env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            start_new_session=True,  # one process group: a hard kill takes the child with it
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        hello = self._read(time.monotonic() + start_timeout)
        if hello.get("op") != "ready":
            self.destroy()
            raise WorkerLost(f"the worker did not start: {hello}")
        self.protections: dict[str, Any] = hello["protections"]
        self.pending_ready = False

    def _read(self, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._from_worker], [], [], remaining)
            if ready:
                break
        try:
            return codec.unpack(codec.read_frame(self._from_worker))
        except (EOFError, CodecError, OSError) as exc:
            raise WorkerLost(f"the worker's supervisor is gone or garbled: {exc!r}") from None

    def _write(self, message: dict[str, Any]) -> None:
        try:
            codec.write_all(self._to_worker, codec.pack(message))
        except OSError as exc:
            raise WorkerLost(f"cannot write to the worker: {exc}") from None

    def call(self, message: dict[str, Any], serve: Callable[[dict[str, Any]], dict[str, Any]], wall_seconds: float) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """``(done, exit)``: the child's ``done`` frame (None if it gave none) and
        the supervisor's own report of how the child ended."""
        self.await_ready()
        self._write(message)
        deadline = time.monotonic() + wall_seconds
        done: dict[str, Any] | None = None
        violation: str | None = None
        killing = False
        while True:
            try:
                frame = self._read(deadline if not killing else time.monotonic() + 5.0)
            except TimeoutError:
                if killing:
                    raise WorkerLost("the supervisor did not report the killed child") from None
                self._write({"op": "kill"})
                killing = True
                continue
            op = frame["op"]
            if op == "exit":
                frame["timed_out"] = killing and violation is None and done is None
                frame["violation"] = violation
                break
            if op != "child" or not isinstance(frame.get("data"), bytes):
                raise WorkerLost(f"unexpected frame {op!r} from the supervisor")
            if killing:
                continue
            try:
                inner = codec.unpack(frame["data"])
                if inner["op"] == "done" and done is None:
                    done = inner
                elif inner["op"] == "load" and done is None:
                    self._write(serve(inner))
                else:
                    raise CodecError(f"unexpected {inner['op']!r} from the method's process")
            except (CodecError, KeyError, TypeError) as exc:
                violation = str(exc)
                self._write({"op": "kill"})
                killing = True
        # The supervisor forks the next child now; the next call waits for its
        # "ready" (see await_ready), so the fork is off this call's path.
        self.pending_ready = True
        return (None if violation else done), frame

    def await_ready(self) -> None:
        if self.pending_ready:
            ready = self._read(time.monotonic() + 10.0)
            if ready.get("op") != "ready":
                raise WorkerLost(f"expected ready, got {ready.get('op')!r}")
            self.pending_ready = False

    def destroy(self) -> None:
        """Kill the supervisor and its child. Idempotent; the descriptors stay
        open until the object goes, so a thread still reading sees EOF, not a
        reused descriptor."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def __del__(self) -> None:
        for fd in (getattr(self, "_to_worker", -1), getattr(self, "_from_worker", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def stop(self) -> None:
        try:
            self._write({"op": "stop"})
            self.proc.wait(timeout=2)
        except (WorkerLost, subprocess.TimeoutExpired):
            pass
        self.destroy()


# -- one call ------------------------------------------------------------------------


class _Call:
    """The objects one call was given, by the key the worker knows them by."""

    def __init__(self) -> None:
        self.objects: dict[str, UvmObject] = {}
        self._keys: dict[int, str] = {}

    def key(self, obj: Any) -> str | None:
        if not isinstance(obj, UvmObject):
            return None
        key = self._keys.get(id(obj))
        if key is None:
            # an object outside any database (built in a test, or new this
            # transaction) has no OID yet: it gets a key for this call
            key = oid_hex(obj) if obj._p_oid is not None else f"new-{len(self._keys)}"
            self._keys[id(obj)] = key
            self.objects[key] = obj
        return key

    def given(self, key: str) -> UvmObject:
        obj = self.objects.get(key)
        if obj is None:
            raise CodecError(f"a reference to {key!r}, which this call was not given")
        return obj

    def state(self, obj: UvmObject) -> dict[str, Any]:
        slots = {name: plain(value) for name, value in obj._own_slots().items()}
        return {
            "name": name_of(obj),
            "description": obj.describe(),
            "slots": codec.encode(slots, self.key),
            "methods": {s: obj.method_record(s).source for s in obj.method_names()},
        }


def plain(value: Any, depth: int = 0) -> Any:
    """A slot value as the worker may see it: persistent containers as plain
    ones, objects by reference, anything else as an :class:`Opaque` description."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, UvmObject)):
        return value if not isinstance(value, complex) else Opaque(repr(value))
    if depth > 50:
        return Opaque(repr(value)[:80])
    if isinstance(value, tuple):
        return tuple(plain(v, depth + 1) for v in value)
    if isinstance(value, list) or type(value).__name__ == "PersistentList":
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping) or type(value).__module__.startswith("BTrees") and hasattr(value, "items"):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(plain(v, depth + 1) for v in value)
    if isinstance(value, Set):
        return {plain(v, depth + 1) for v in value}
    return Opaque(f"{type(value).__name__}: {repr(value)[:80]}")


# -- the pool --------------------------------------------------------------------------------


class MethodRuntime:
    """Runs stored methods in a pool of sandbox workers.

    Started with ``unsafe=False`` (the default) it refuses to run anything
    unless the host offers seccomp and Landlock; ``unsafe=True`` is what the
    kernel's ``--unsafe-unsandboxed-methods`` flag asks for: separate,
    rlimited processes without the system call and file system walls.
    """

    def __init__(self, size: int = 4, limits: MethodLimits = MethodLimits(), unsafe: bool = False,
                 events: Events | None = None) -> None:
        self.size = size
        self.limits = limits
        self.unsafe = unsafe
        self.events = events
        self.protections = lockdown.probe()
        self._idle: list[Worker] = []
        self._alive: set[Worker] = set()
        self._count = 0
        self._busy = 0
        self._waiting: dict[int, float] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0
        self.faults = 0

    @property
    def refused(self) -> str | None:
        """Why stored methods may not run here, or None."""
        if self.unsafe or self.protections.complete:
            return None
        missing = [n for n, ok in (("seccomp", self.protections.seccomp), ("Landlock", self.protections.landlock_abi >= 1)) if not ok]
        return f"this host lacks {' and '.join(missing)}; stored methods run only with {UNSAFE_FLAG}"

    def status(self) -> dict[str, Any]:
        with self._cond:
            oldest = min(self._waiting.values(), default=None)
            return {
                "protections": {**self.protections.as_dict(), "unsafe": self.unsafe, "refused": self.refused},
                "limits": asdict(self.limits),
                "workers": self._count, "busy": self._busy, "waiting": len(self._waiting),
                "oldest_wait_s": round(time.monotonic() - oldest, 3) if oldest is not None else None,
                "calls": self.calls, "faults": self.faults,
            }

    def install(self) -> "MethodRuntime":
        """Make this the process's runner for stored methods."""
        global _installed
        HOOKS.run_method = self.run
        _installed = self
        return self

    def warm(self) -> None:
        """Start the pool's workers in the background."""
        threading.Thread(target=self._warm, name="sandbox-warm", daemon=True).start()

    def _warm(self) -> None:
        while True:
            with self._cond:
                if self._closed or self._count >= self.size:
                    return
                self._count += 1
            try:
                worker = self._spawn()
            except Exception:  # noqa: BLE001 - a worker that cannot start is reported when a call needs one
                log.exception("a sandbox worker did not start")
                with self._cond:
                    self._count -= 1
                return
            self._checkin(worker)

    def _spawn(self) -> Worker:
        worker = Worker(self.unsafe)
        with self._cond:
            self._alive.add(worker)
        return worker

    def close(self) -> None:
        """Stop every worker, busy ones included: a call still running ends
        with ``method_killed`` at once, so a graceful stop never waits on one."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._alive - set(idle)
            self._alive.clear()
            self._cond.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.destroy()
        global _installed
        if HOOKS.run_method == self.run:
            HOOKS.run_method = None
        if _installed is self:
            _installed = None

    def _checkout(self) -> Worker:
        me = threading.get_ident()
        with self._cond:
            self._waiting[me] = time.monotonic()
            try:
                while not self._idle and self._count >= self.size and not self._closed:
                    self._cond.wait()
                if self._closed:
                    raise MethodFault(ErrorCode.SANDBOX_UNAVAILABLE, "the method runtime is shutting down")
                self._busy += 1
                if self._idle:
                    return self._idle.pop(0)  # the longest idle: its next child is forked by now
                self._count += 1
            finally:
                del self._waiting[me]
        try:
            return self._spawn()
        except Exception as exc:
            with self._cond:
                self._count -= 1
                self._busy -= 1
                self._cond.notify()
            raise MethodFault(ErrorCode.SANDBOX_UNAVAILABLE, f"cannot start a sandbox worker: {exc}") from None

    def _checkin(self, worker: Worker | None, was_busy: bool = False) -> None:
        with self._cond:
            if was_busy:
                self._busy -= 1
            if worker is None:
                self._count -= 1
            elif self._closed:
                worker.destroy()
                self._count -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()

    # -- a call -------------------------------------------------------------------------

    def run(self, receiver: UvmObject, owner: UvmObject, record: MethodRecord, args: list[Any], kwargs: dict[str, Any],
            *, override: str | None = None, apply: bool = True, limits: MethodLimits | None = None) -> Any:
        """Run *record* (or, for a trial, the *override* source under its
        selector) on *receiver*; with *apply*, its changes become the
        caller's transaction's. Raises :class:`MethodFault` when it fails."""
        refused = self.refused
        if refused:
            raise MethodFault(ErrorCode.SANDBOX_UNAVAILABLE, refused)
        selector = record.selector
        limits = limits or limits_for(receiver, selector, self.limits)
        call = _Call()
        receiver_key = call.key(receiver)
        assert receiver_key is not None
        objects = {call.key(obj): call.state(obj) for obj in receiver.ancestors()}
        try:
            message = {
                "op": "call", "receiver": receiver_key, "selector": selector,
                "args": codec.encode(plain(list(args)), call.key), "kwargs": codec.encode(plain(dict(kwargs)), call.key),
                "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes},
                "objects": objects, "override": {selector: override} if override is not None else None,
            }
        except CodecError as exc:
            raise MethodFault(ErrorCode.METHOD_ERROR, f"{selector}: an argument cannot be sent to the method: {exc}", "ValueError") from None

        def serve(request: dict[str, Any]) -> dict[str, Any]:
            key = request.get("oid")
            obj = call.objects.get(key) if isinstance(key, str) else None
            if obj is None:
                return {"op": "error", "message": f"{key!r} is not an object this call was given"}
            return {"op": "state", "oid": key, "state": call.state(obj)}

        started = time.monotonic()
        worker = self._checkout()
        try:
            done, exit_report = worker.call(message, serve, limits.wall_seconds)
        except WorkerLost as exc:
            worker.destroy()
            with self._cond:
                self._alive.discard(worker)
            self._checkin(None, was_busy=True)
            self._fault(receiver, selector, "method_killed", str(exc))
            raise MethodFault(ErrorCode.METHOD_KILLED, f"{selector}: the sandbox worker was lost ({exc}); the call's changes are discarded") from None
        except BaseException:
            worker.destroy()
            with self._cond:
                self._alive.discard(worker)
            self._checkin(None, was_busy=True)
            raise
        self._checkin(worker, was_busy=True)
        with self._cond:
            self.calls += 1
        elapsed = time.monotonic() - started
        if done is None or not done.get("ok"):
            raise self._failure(receiver, selector, limits, done, exit_report, elapsed)
        try:
            value = codec.decode(done["value"], call.given)
            if apply:
                self._apply(receiver, selector, call, done.get("changes") or {})
        except (CodecError, InvalidName, TypeError, KeyError, AttributeError) as exc:
            self._fault(receiver, selector, "method_killed", f"invalid result: {exc}")
            raise MethodFault(ErrorCode.METHOD_KILLED, f"{selector}: the method's process sent back something the kernel refuses: {exc}") from None
        return value

    def _failure(self, receiver: UvmObject, selector: str, limits: MethodLimits, done: dict[str, Any] | None,
                 exit_report: dict[str, Any], elapsed: float) -> MethodFault:
        if done is not None:
            error = done.get("error") or {}
            kind, text = str(error.get("type", "Error")), str(error.get("message", ""))
            where = f" (line {error['line']} of {error['method']})" if error.get("line") else ""
            if kind == "MemoryError":
                self._fault(receiver, selector, "method_memory", text)
                return MethodFault(ErrorCode.METHOD_MEMORY, f"MemoryError: {selector} ran out of its memory limit of {limits.memory_bytes >> 20} MiB{where}", kind)
            return MethodFault(ErrorCode.METHOD_ERROR, f"{kind}: {text}{where}", kind)
        sig = exit_report.get("signal")
        if exit_report.get("timed_out"):
            code, text = ErrorCode.METHOD_TIMEOUT, f"{selector} did not finish within its wall-clock limit of {limits.wall_seconds:g}s and was killed"
        elif sig == signal.SIGXCPU:
            code, text = ErrorCode.METHOD_TIMEOUT, f"{selector} used its CPU limit of {limits.cpu_seconds}s and was killed"
        elif sig == signal.SIGSYS:
            code, text = ErrorCode.METHOD_KILLED, f"{selector} made a system call the sandbox forbids and was killed"
        elif exit_report.get("violation"):
            code, text = ErrorCode.METHOD_KILLED, f"{selector} broke the sandbox's protocol ({exit_report['violation']}) and was killed"
        else:
            how = f"signal {signal.Signals(sig).name}" if sig else f"exit code {exit_report.get('code')}"
            code, text = ErrorCode.METHOD_KILLED, f"{selector}'s process ended without a result ({how})"
        self._fault(receiver, selector, code.value, text, cpu_s=exit_report.get("cpu_s"), elapsed_s=round(elapsed, 3))
        return MethodFault(code, text + "; its changes are discarded")

    def _fault(self, receiver: UvmObject, selector: str, kind: str, text: str, **fields: Any) -> None:
        with self._cond:
            self.faults += 1
        log.warning("stored method %s of %s: %s: %s", selector, name_of(receiver), kind, text)
        if self.events is not None:
            self.events("method_fault", target=name_of(receiver), selector=selector, kind=kind, message=text[:500], **fields)

    def _apply(self, receiver: UvmObject, selector: str, call: _Call, changes: dict[str, Any]) -> None:
        """Validate every change before applying any: a bad one discards them all."""
        planned: list[tuple[UvmObject, str, Any, bool]] = []
        breaches: list[str] = []
        for key, change in changes.items():
            obj = call.given(key)
            assigned = set(change.get("assigned") or ())
            for name, encoded in (change.get("slots") or {}).items():
                check_selector(name)
                value = codec.decode(encoded, call.given)
                if _holds(value, (Opaque, Described)):
                    raise CodecError(f"slot {name!r} would hold a description, not a value")
                planned.append((obj, name, value, False))
                if name not in assigned and not change.get("marked"):
                    breaches.append(f"{name_of(obj)}.{name}")
            for name in change.get("deleted") or ():
                check_selector(name)
                planned.append((obj, name, None, True))
        for obj, name, value, delete in planned:
            if delete:
                delattr(obj, name)
            else:
                setattr(obj, name, value)
        if breaches:
            # The Covenant asks a method that mutates a slot in place to mark
            # the object changed; in-process that change was silently lost.
            # The kernel applies it and records the breach for the guardian's sake.
            log.warning("covenant breach by %s of %s: %s changed in place without _p_changed", selector, name_of(receiver), ", ".join(breaches))
            if self.events is not None:
                self.events("covenant_breach", target=name_of(receiver), selector=selector, slots=breaches)


_installed: MethodRuntime | None = None


def installed() -> MethodRuntime:
    """The runtime this process runs stored methods with (for trials)."""
    if _installed is None:
        raise MethodsNotRunnable()
    return _installed


def _holds(value: Any, kinds: tuple[type, ...], depth: int = 0) -> bool:
    if isinstance(value, kinds):
        return True
    if depth > codec.MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(_holds(k, kinds, depth + 1) or _holds(v, kinds, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(v, kinds, depth + 1) for v in value)
    return False


