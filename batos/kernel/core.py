"""The kernel core: what a message does to the image, with no socket in sight.

The asyncio server (:mod:`batos.kernel.server`) decodes frames and calls in here;
tests drive this module directly. Every request runs in its own connection
with its own explicit transaction manager (:func:`batos.core.txn.transact`), so a
method that raises aborts only its own transaction, and write conflicts are
retried a bounded number of times.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections import OrderedDict, UserList
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from transaction.interfaces import TransientError
from ZODB.POSException import POSKeyError

from batos import __version__
from batos.core.errors import BatosError, CodedError, ErrorCode, InvalidName, MessageNotUnderstood, MethodFault
from batos.core.hooks import Learning
from batos.core.image import Image, root_names, root_object
from batos.core.refs import name_of, oid_bytes, oid_hex
from batos.core.txn import reading, transact
from batos.core.uvm import MethodRecord, UvmObject
from batos.wire.protocol import DEFAULT_ENDPOINT, PROTOCOL_VERSION, Error, Inspect, Result, Send, View

ProgressFn = Callable[[str, str], None]
# a message the runtime answers with its own code beside the object model: (args, intent, progress) -> value
Handler = Callable[[list[Any], "str | None", "ProgressFn | None"], Any]


class Learner(Protocol):
    """What the kernel needs from the cognitive cycle (``batos.cognition.cycle.CycleEngine``)."""

    def drive(self, cycle_id: str, progress: ProgressFn | None = None) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...


class Services(Protocol):
    """What the kernel needs from the slower loops (``batos.loops.service.Loops``)."""

    def selectors(self) -> frozenset[str]: ...

    def handler(self, receiver: str, selector: str) -> Handler | None: ...

    def summary(self) -> dict[str, Any]: ...

    def served(self, in_flight: Callable[[], int]) -> None: ...

    def touch(self) -> None: ...


class Sandbox(Protocol):
    """What the kernel needs from the stored methods' runtime (``batos.sandbox.runtime.MethodRuntime``),
    which the composition root installs as the object model's runner."""

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


log = logging.getLogger(__name__)
MAX_DEPTH = 32
MAX_REPR = 500


@dataclass(frozen=True)
class KernelConfig:
    endpoint: str = DEFAULT_ENDPOINT
    max_message_size: int = 1 << 20
    workers: int = 4
    conflict_attempts: int = 10
    shutdown_grace: float = 30.0


class KernelError(CodedError):
    """A request the kernel refuses; becomes an ``error`` reply with ``code``."""


class _MethodFailed(Exception):
    """Carries the exception a method raised out of the transaction (which aborts)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def check_wire_selector(selector: str) -> str:
    """Plain identifiers only: private and dunder selectors never cross the wire."""
    if not selector.isidentifier():
        raise KernelError(ErrorCode.BAD_SELECTOR, f"selector {selector!r} is not a plain identifier")
    if selector.startswith("_"):
        raise KernelError(ErrorCode.BAD_SELECTOR, f"selector {selector!r} is private; names starting with '_' cannot be sent")
    return selector


def parse_oid(text: str) -> bytes:
    oid = oid_bytes(text)
    if oid is None:
        raise KernelError(ErrorCode.UNKNOWN_TARGET, f"{text!r} is neither a root name nor an OID like 0x2a (below 2**64)")
    return oid


def resolve_target(root: Any, target: str) -> UvmObject:
    """A root name (``genesis``) or an OID (``0x2a``) to a live UvmObject."""
    if target.startswith("0x"):
        try:
            obj = root._p_jar.get(parse_oid(target))
            obj._p_activate()
        except POSKeyError:
            raise KernelError(ErrorCode.UNKNOWN_TARGET, f"no object with OID {target}") from None
        if not isinstance(obj, UvmObject):
            raise KernelError(ErrorCode.UNKNOWN_TARGET, f"OID {target} is a {type(obj).__name__}, not a UvmObject")
        return obj
    try:
        return root_object(root, target)
    except InvalidName as exc:
        raise KernelError(ErrorCode.UNKNOWN_TARGET, str(exc)) from None


class WireValues:
    """Converts results to msgpack-native data and argument refs back to objects.

    A UvmObject becomes ``{"$ref": OID, "root": name-or-None, "description": ...}``,
    usable as a later target; anything msgpack cannot carry becomes
    ``{"$repr": ..., "type": ...}`` rather than failing the reply.
    """

    def __init__(self, root: Any) -> None:
        self.root = root
        self._names: dict[bytes, str] | None = None

    def ref(self, obj: UvmObject) -> dict[str, Any]:
        if obj._p_oid is None:
            # A new object returned by a method: give it an OID now so the
            # reference is usable (it is stored when the transaction commits).
            self.root._p_jar.add(obj)
        if self._names is None:
            self._names = {self.root[n]._p_oid: n for n in root_names(self.root)}
        return {"$ref": oid_hex(obj), "root": self._names.get(obj._p_oid), "description": obj.describe()[:200]}

    def out(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, (bool, str, bytes, float)):
            return value
        if isinstance(value, int):
            return value if -(2**63) <= value < 2**64 else {"$repr": str(value), "type": "int"}
        if isinstance(value, UvmObject):
            return self.ref(value)
        if isinstance(value, MethodRecord):
            return value.summary()
        if depth >= MAX_DEPTH:
            return self._repr(value)
        if isinstance(value, (list, tuple, UserList)):
            return [self.out(v, depth + 1) for v in value]
        if isinstance(value, Mapping) or type(value).__module__.startswith("BTrees") and hasattr(value, "items"):
            return {k if isinstance(k, str) else repr(k): self.out(v, depth + 1) for k, v in value.items()}
        return self._repr(value)

    @staticmethod
    def _repr(value: Any) -> dict[str, str]:
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break the reply
            text = f"<unrepresentable: {type(exc).__name__}>"
        # a value the sandbox could only describe carries its own type's name
        return {"$repr": text[:MAX_REPR], "type": getattr(value, "type_name", None) or type(value).__name__}

    def arg(self, value: Any) -> Any:
        """Arguments: ``{"$ref": OID}`` maps to the object; everything else is data."""
        if isinstance(value, dict) and isinstance(value.get("$ref"), str):
            return resolve_target(self.root, value["$ref"])
        return value


class RequestLedger:
    """Remembers recent requests so a client's retry is never run twice.

    The Lazy Pirate client resends a request it got no answer to; the kernel
    must not execute a state-changing send a second time. A retry of a
    request still running is ignored (its reply will come); a retry of a
    finished one gets the same final reply again.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[bytes, str], Any] = OrderedDict()

    RUNNING = object()

    def begin(self, client: bytes, request_id: str) -> Any:
        """None for a new request, RUNNING, or the cached final reply."""
        key = (client, request_id)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        self._entries[key] = self.RUNNING
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return None

    def finish(self, client: bytes, request_id: str, reply: Any) -> None:
        self._entries[(client, request_id)] = reply


class Kernel:
    """Executes requests against an open image. Thread-safe: one call per worker.

    With a :class:`Learner`, an unknown selector is learned: the send waits
    for the cycle (forwarding its progress), then runs the new method.
    Without one, it is refused with ``not_understood``. With
    :class:`Services`, the messages they answer (``genesis contemplate``,
    ``orchestrator goals`` ...) are served by them once the receiver resolves.
    """

    def __init__(self, image: Image, config: KernelConfig = KernelConfig(), engine: Learner | None = None, pool: Any = None,
                 loops: Services | None = None, sandbox: Sandbox | None = None) -> None:
        self.image = image
        self.sandbox = sandbox
        self.config = config
        self.engine = engine
        self.pool = pool  # the ModelPool hosting loaded models, for status
        self.loops = loops
        self.started = time.time()
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}  # request number -> when it started
        self._targets: dict[str, threading.Lock] = {}
        self._next = 0
        self.in_flight = 0
        self.handled = 0
        if loops is not None:
            loops.served(lambda: self.in_flight)

    def status(self) -> dict[str, Any]:
        return {
            "image": self.image.uri,
            "pid": os.getpid(),
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "uptime_s": round(time.time() - self.started, 3),
            "in_flight": self.in_flight,
            "handled": self.handled,
            "oldest_running_s": self._oldest_running(),
            "sandbox": self.sandbox.status() if self.sandbox is not None else None,
            **(self.engine.status() if self.engine else {"cycles_running": 0, "models_loaded": [], "model_calls": 0}),
            "model_memory": self.pool.status() if self.pool is not None else None,
            "loops": self.loops.summary() if self.loops is not None else None,
        }

    def _begin(self) -> int:
        with self._lock:
            self.in_flight += 1
            self._next += 1
            self._running[self._next] = time.monotonic()
            return self._next

    def _end(self, number: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.handled += 1
            del self._running[number]

    def _oldest_running(self) -> float | None:
        with self._lock:
            oldest = min(self._running.values(), default=None)
        return round(time.monotonic() - oldest, 3) if oldest is not None else None

    # -- send -------------------------------------------------------------------

    def send(self, request: Send, progress: ProgressFn | None = None) -> Result | Error:
        """Run one message in its own transaction; blocking (call it off the loop).

        Every request gets a reply: a bug anywhere below becomes an
        ``internal`` error rather than a silence the client would retry into.
        """
        number = self._begin()
        try:
            handler = self._service_handler(request)
            if handler is not None:
                return Result(id=request.id, value=handler(list(request.args), request.intent, progress))
            value = self._transact_send(request)
            if isinstance(value, Learning):
                assert self.engine is not None  # only an engine's kernel asks _doesNotUnderstand_
                if progress is not None:
                    progress("LEARNING", f"{request.target} does not understand {request.selector!r} yet; cycle {value.cycle_id}")
                outcome = self.engine.drive(value.cycle_id, progress)
                if not outcome["completed"]:
                    reason = outcome["outcome"].get("reason", "the cycle did not complete")
                    return Error(id=request.id, code=ErrorCode.CYCLE_FAILED, message=f"cycle {value.cycle_id} failed: {reason} (see `batos cycles show {value.cycle_id}` or :cycle {value.cycle_id})")
                value = self._transact_send(request)  # now understood: answer the message
            return Result(id=request.id, value=value)
        except _MethodFailed as exc:
            error = exc.error
            return Error(id=request.id, code=ErrorCode.METHOD_ERROR, message=f"{type(error).__name__}: {error}", exc_type=type(error).__name__)
        except MethodFault as exc:  # a stored method raised, or its sandbox stopped it
            return Error(id=request.id, code=exc.code, message=str(exc), exc_type=exc.exc_type)
        except TransientError as exc:
            return Error(id=request.id, code=ErrorCode.CONFLICT, message=f"gave up after {self.config.conflict_attempts} conflicting attempts: {exc}")
        except BatosError as exc:
            return Error(id=request.id, code=exc.code, message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a kernel bug still answers the request
            log.exception("internal error serving %s %s", request.target, request.selector)
            return Error(id=request.id, code=ErrorCode.INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._end(number)
            if self.loops is not None:
                self.loops.touch()

    def _service_handler(self, request: Send) -> Handler | None:
        """The receiver is resolved first (an unknown one is ``unknown_target``, an
        OID works as well as a root name); then the services may answer for it.
        Only their own selectors pay for that read: every other send goes straight
        to its transaction."""
        if self.loops is None or request.selector not in self.loops.selectors():
            return None
        with reading(self.image.db) as root:
            receiver = resolve_target(root, request.target)
            name = next((n for n in root_names(root) if root[n] is receiver), None)
        return self.loops.handler(name, request.selector) if name is not None else None

    def _transact_send(self, request: Send) -> Any:
        # Sends to one receiver take turns: a stored method runs for
        # milliseconds in its worker, and concurrent writers to one object
        # would otherwise conflict and retry into the bound.
        with self._target_lock(request.target):
            return self._transact(request)

    def _target_lock(self, target: str) -> threading.Lock:
        with self._lock:
            lock = self._targets.get(target)
            if lock is None:
                lock = self._targets[target] = threading.Lock()
            return lock

    def _transact(self, request: Send) -> Any:
        return transact(
            self.image.db,
            lambda root: self._send_in_transaction(root, request),
            attempts=self.config.conflict_attempts,
            note=f"send {request.target} {request.selector}",
        )

    def _send_in_transaction(self, root: Any, request: Send) -> Any:
        selector = check_wire_selector(request.selector)
        receiver = resolve_target(root, request.target)
        values = WireValues(root)
        args = [values.arg(a) for a in request.args]
        kwargs = {k: values.arg(v) for k, v in request.kwargs.items()}
        try:
            member = getattr(receiver, selector)
        except MessageNotUnderstood:
            member = None
        if member is None:
            if self.engine is None:
                raise KernelError(ErrorCode.NOT_UNDERSTOOD, f"{name_of(receiver)} does not understand {selector!r}; no model is configured to learn it")
            return self._not_understood(receiver, selector, args, kwargs, request.intent)
        elif callable(member):
            self._check_arguments(selector, member, args, kwargs)
            outcome = self._call(member, *args, **kwargs)
        elif args or kwargs:
            raise KernelError(ErrorCode.NOT_CALLABLE, f"{selector!r} is a slot holding {type(member).__name__}, not a method; send it with no arguments to read it")
        else:
            outcome = member
        return values.out(outcome)

    @staticmethod
    def _check_arguments(selector: str, member: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
        for key in kwargs:
            if not key.isidentifier() or key.startswith("_"):
                raise KernelError(ErrorCode.BAD_ARGUMENTS, f"keyword {key!r} is not a plain identifier")
        try:
            signature = inspect.signature(member)
        except (TypeError, ValueError):
            return  # no introspectable signature; let the call decide
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise KernelError(ErrorCode.BAD_ARGUMENTS, f"{selector}: {exc}") from None

    @staticmethod
    def _not_understood(receiver: UvmObject, selector: str, args: list[Any], kwargs: dict[str, Any], intent: str | None) -> Learning:
        try:
            ticket = receiver._doesNotUnderstand_(selector, args, kwargs, intent)
        except MessageNotUnderstood as exc:
            raise KernelError(ErrorCode.NOT_UNDERSTOOD, f"{exc}; this image has no orchestrator to learn it") from None
        if not isinstance(ticket, Learning):
            raise KernelError(ErrorCode.NOT_UNDERSTOOD, f"{name_of(receiver)} does not understand {selector!r}")
        return ticket

    @staticmethod
    def _call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (TransientError, MethodFault):
            raise
        except BaseException as exc:  # noqa: BLE001 - a method may raise anything, even SystemExit
            raise _MethodFailed(exc) from None

    # -- inspect ----------------------------------------------------------------

    def inspect(self, request: Inspect) -> View | Error:
        """Read-only views for the console; never commits."""
        try:
            with reading(self.image.db) as root:
                values = WireValues(root)
                if request.what == "roots":
                    view = {"roots": [values.ref(root[name]) for name in root_names(root)]}
                elif request.target is None:
                    raise KernelError(ErrorCode.BAD_REQUEST, f"inspect {request.what} needs a target")
                elif request.what == "object":
                    view = self._object_view(resolve_target(root, request.target), values)
                else:
                    if request.selector is None:
                        raise KernelError(ErrorCode.BAD_REQUEST, "inspect source needs a selector")
                    view = self._source_view(resolve_target(root, request.target), request.selector, values)
            return View(id=request.id, view=view)
        except KernelError as exc:
            return Error(id=request.id, code=exc.code, message=str(exc))

    @staticmethod
    def _object_view(obj: UvmObject, values: WireValues) -> dict[str, Any]:
        inherited = sorted({s for a in obj.ancestors() if a is not obj for s in a.method_names()})
        return {
            **values.ref(obj),
            "parents": [values.ref(p) for p in obj.parents],
            "slots": {name: WireValues._repr(getattr(obj, name))["$repr"][:120] for name in obj.slot_names() if name != "parents"},
            "methods": {s: obj.method_record(s).summary() for s in obj.method_names()},
            "inherited_methods": inherited,
        }

    @staticmethod
    def _source_view(obj: UvmObject, selector: str, values: WireValues) -> dict[str, Any]:
        for owner in obj.ancestors():
            record = owner.method_record(selector)
            if record is not None:
                return {
                    "owner": values.ref(owner),
                    **record.summary(),
                    "source": record.source,
                    "history": [r.summary() for r in record.history],
                }
        raise KernelError(ErrorCode.NOT_UNDERSTOOD, f"{obj.describe()[:60]} has no method {selector!r}")
