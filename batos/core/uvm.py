"""``UvmObject``: prototypal, persistent objects with methods stored as source.

The model is Self/Io: an object is a bag of slots plus a tuple of parents;
a name not found on the receiver is looked up depth-first through the parents.
Methods are not Python attributes but *records* holding source code, because a
function object cannot be pickled into ZODB. Source is compiled lazily into a
``_v_`` (volatile) cache, which ZODB drops whenever the object is ghosted, so a
freshly loaded image recompiles on first use and never stores code objects.

Slots are the object's own instance attributes: they are pickled with the
object (a slot write stores one record) and an own-slot read is an ordinary
attribute read. Every internal attribute starts with ``_`` and no slot may
(:func:`check_selector`), so the two never collide.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import time
from typing import Any, Iterable, Iterator

from persistent import Persistent

from batos.core.hooks import HOOKS, Learning
from batos.core.errors import InvalidName, MessageNotUnderstood, MethodSourceError, MethodsNotRunnable, NoSuchVersion
from batos.core.lookup import MISSING, Inherited, loaded
from batos.core.refs import oid_hex

ARCHITECT = "architect"

# The internal attribute set through __setattr__ (the method table, mutated
# in place and then marked with _p_changed); ``_p_`` and ``_v_`` names belong
# to persistence.
_INTERNAL = frozenset({"_methods", "_limits"})


def check_selector(name: object) -> str:
    """Return *name* if it may name a slot or method, else raise InvalidName.

    Private and dunder names are refused so that nothing stored in a slot can
    shadow Python or persistence machinery (``_p_jar``, ``__class__``...).
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise InvalidName(f"not a valid name: {name!r} (must be a Python identifier)")
    if name.startswith("_"):
        raise InvalidName(f"not a valid name: {name!r} (names starting with '_' are private)")
    if name in RESERVED_NAMES:
        raise InvalidName(f"not a valid name: {name!r} (reserved by UvmObject)")
    return name


def parse_method(selector: str, source: str) -> ast.FunctionDef:
    """Check that *source* is a method record for *selector*, without running it.

    The source is a module: optional imports and helper statements, and
    exactly one top-level ``def <selector>(self, ...)``. It is parsed and
    compiled (which runs nothing) but never executed here: stored methods run
    only in the sandbox (:mod:`batos.sandbox`). Safety is the guardian's and
    the sandbox's job; this only makes sure the record says what it claims.
    """
    try:
        tree = ast.parse(source, filename=f"<method {selector}>")
        compile(tree, f"<method {selector}>", "exec")
    except SyntaxError as exc:
        raise MethodSourceError(f"Line {exc.lineno}: syntax error in {selector!r}: {exc.msg}") from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == selector]
    if len(defs) != 1:
        raise MethodSourceError(f"source must define exactly one top-level function {selector!r}, found {len(defs)}")
    func = defs[0]
    if isinstance(func, ast.AsyncFunctionDef):
        raise MethodSourceError(f"Line {func.lineno}: {selector!r} must be a plain function, not async")
    params = func.args.posonlyargs + func.args.args
    if not params or params[0].arg != "self":
        raise MethodSourceError(f"Line {func.lineno}: the first parameter of {selector!r} must be 'self'")
    return func


_DEFAULT = object()  # stands for a default value the kernel never evaluates


def method_signature(func: ast.FunctionDef) -> inspect.Signature:
    """The parameters of a parsed method without ``self``, for checking a
    message's arguments before a worker is asked. Defaults are placeholders:
    evaluating them would run the method's code in the kernel."""
    kind = inspect.Parameter
    args = func.args
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    params = []
    for index, arg in enumerate(positional):
        if index == 0:
            continue
        params.append(kind(arg.arg, kind.POSITIONAL_ONLY if index < len(args.posonlyargs) else kind.POSITIONAL_OR_KEYWORD,
                           default=_DEFAULT if index >= first_default else kind.empty))
    if args.vararg:
        params.append(kind(args.vararg.arg, kind.VAR_POSITIONAL))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        params.append(kind(arg.arg, kind.KEYWORD_ONLY, default=kind.empty if default is None else _DEFAULT))
    if args.kwarg:
        params.append(kind(args.kwarg.arg, kind.VAR_KEYWORD))
    return inspect.Signature(params)


class StoredMethod:
    """A method record bound to a receiver. Calling it asks the registered
    method runtime (:data:`batos.core.hooks.HOOKS`), which runs the source in
    a sandboxed worker and applies the changes it reports; with none
    registered it refuses rather than run stored code in this process."""

    __slots__ = ("owner", "record", "receiver")

    def __init__(self, owner: "UvmObject", record: "MethodRecord", receiver: "UvmObject") -> None:
        self.owner, self.record, self.receiver = owner, record, receiver

    @property
    def __signature__(self) -> inspect.Signature:
        return method_signature(parse_method(self.record.selector, self.record.source))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        runner = HOOKS.run_method
        if runner is None:
            raise MethodsNotRunnable()
        return runner(self.receiver, self.owner, self.record, list(args), dict(kwargs))

    def __repr__(self) -> str:
        return f"<stored method {self.record.selector} v{self.record.version} of {self.receiver!r}>"


class MethodRecord(Persistent):
    """One immutable version of a method.

    ``previous`` holds every earlier version, oldest first, so the whole
    history is reachable from the current record and a revert never needs
    anything but the record itself.
    """

    def __init__(
        self,
        selector: str,
        source: str,
        version: int,
        author: str,
        cycle: str | None,
        previous: tuple["MethodRecord", ...] = (),
        reverted_from: int | None = None,
    ) -> None:
        self.selector = selector
        self.source = source
        self.version = version
        self.author = author
        self.cycle = cycle
        self.created_at = time.time()
        self.previous = previous
        self.reverted_from = reverted_from

    @property
    def history(self) -> tuple["MethodRecord", ...]:
        """All versions, oldest first, ending with this one."""
        return self.previous + (self,)

    def summary(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "version": self.version,
            "author": self.author,
            "cycle": self.cycle,
            "created_at": self.created_at,
            "reverted_from": self.reverted_from,
        }

    def __repr__(self) -> str:
        return f"<MethodRecord {self.selector} v{self.version} by {self.author}>"


class UvmObject(Persistent):
    """A persistent prototype: slots, parents, and methods held as source.

    Slots are instance attributes; the parents are the ``parents`` slot
    (always a tuple, so replacing it is an assignment that ZODB notices);
    methods are :class:`MethodRecord` values in the ``_methods`` dict. Both
    are the object's own state: one record per object, and a lookup reads
    each object's dicts directly (the method dict is a plain one because
    a ``PersistentMapping`` costs every visited object a load check).
    Reads use Python's generic lookup, and names found through the parents
    get a class-level shortcut: :mod:`batos.core.lookup` says why.

    The Persistence Covenant: a method that mutates a mutable value held in a
    slot (a list, a dict) must end with ``self._p_changed = True``; the slot
    values are pickled with the object, so that marks exactly what changed.
    """

    __getattribute__ = object.__getattribute__

    def __init__(self, parents: Iterable["UvmObject"] = (), **slots: Any) -> None:
        super().__init__()
        self._methods: dict[str, MethodRecord] = {}
        self.parents = parents
        for name, value in slots.items():
            setattr(self, name, value)

    # -- attribute protocol -------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called when the instance lookup failed: the object is a ghost,
        # or the name is not an own slot. Internals and dunders must fail the
        # Python way, or copy/pickle/persistence would misbehave.
        if name[:1] == "_":
            state = loaded(self)
            if name in state:
                return state[name]
            raise AttributeError(name)
        inherited = Inherited(name)
        value = inherited.__get__(self)
        if name not in UvmObject.__dict__:
            setattr(UvmObject, name, inherited)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith(("_p_", "_v_")) or name in _INTERNAL:
            super().__setattr__(name, value)
            return
        check_selector(name)
        if name == "parents":
            value = _as_parents(value)
        super().__setattr__(name, value)  # Persistent marks the object changed

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            super().__delattr__(name)
            return
        if name == "parents" or name not in loaded(self):
            raise AttributeError(f"{self!r} has no removable slot {name!r}")
        super().__delattr__(name)

    def _resolve(self, name: str) -> tuple["UvmObject", Any, bool]:
        """``(owner, value, is_method)`` for the first definition of *name*,
        depth-first over self and parents, each object visited once. Reads
        walk a chain of single parents in :class:`Inherited`; this is the
        general walk, for branching or cyclic parent graphs."""
        for obj in self.ancestors():
            state = loaded(obj)
            value = state.get(name, MISSING)
            if value is not MISSING:
                return obj, value, False
            record = state["_methods"].get(name)
            if record is not None:
                return obj, record, True
        raise MessageNotUnderstood(self, name)

    def _bound(self, record: MethodRecord, receiver: "UvmObject") -> StoredMethod:
        """This object's method *record*, bound to *receiver* (never compiled here)."""
        return StoredMethod(self, record, receiver)

    def _doesNotUnderstand_(self, selector: str, args: list[Any], kwargs: dict[str, Any], intent: str | None) -> Learning:
        """The kernel's hook for a message nothing in the lookup chain answers.

        The image's owner (the cognitive cycle, when the kernel learns)
        registers in :data:`batos.core.hooks.HOOKS` what to do: typically open
        a cycle and return a :class:`Learning` ticket for the kernel to wait
        on. An object with no such owner, or outside an image, can only refuse.
        """
        jar = self._p_jar
        hook = HOOKS.not_understood
        if jar is None or hook is None:
            raise MessageNotUnderstood(self, selector)
        return hook(jar.root(), self, selector, list(args), dict(kwargs), intent)

    # -- reflection -----------------------------------------------------------

    def ancestors(self) -> Iterator["UvmObject"]:
        """Self, then parents depth-first, each object once even in a cyclic graph."""
        stack: list[UvmObject] = [self]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield obj
            stack.extend(reversed(obj.parents))

    def _own_slots(self) -> dict[str, Any]:
        """Own slot names and values; everything else in ``__dict__`` starts with ``_``."""
        return {name: value for name, value in loaded(self).items() if name[:1] != "_"}

    def slot_names(self) -> list[str]:
        """This object's own slot names (not inherited ones)."""
        return sorted(self._own_slots())

    def method_names(self) -> list[str]:
        """This object's own method selectors (not inherited ones)."""
        return sorted(self._methods)

    def method_record(self, selector: str) -> MethodRecord | None:
        """The current record of an own method, or None."""
        return self._methods.get(selector)

    def responds_to(self, selector: str) -> bool:
        if selector[:1] == "_":
            return False  # internals are not messages
        try:
            self._resolve(selector)
        except MessageNotUnderstood:
            return False
        return True

    def describe(self) -> str:
        """A short, human description, e.g. for the console or ``image info``."""
        slots = self._own_slots()
        name = slots.get("name")
        label = f"{name}: " if isinstance(name, str) else ""
        doc = slots.get("description")
        text = doc if isinstance(doc, str) else f"{len(slots)} slots, {len(self._methods)} methods"
        return f"{label}{text}"

    def __repr__(self) -> str:
        where = f" oid={oid_hex(self)}" if self._p_oid else ""
        return f"<{type(self).__name__}{where}>"

    # -- prototypes -----------------------------------------------------------

    def clone(self, **slots: Any) -> "UvmObject":
        """Self-style clone: same parents, shallow copy of slots and methods.

        Slot values are shared, not copied: cloning never walks the reachable
        graph (the documents' ``deepcopy`` did, and duplicated whole images).
        Method records are immutable, so sharing them is safe.
        """
        new = type(self)()
        # The names were checked when they were set on self; the new object
        # is not in a database yet, so nothing needs marking.
        new.__dict__.update(self._own_slots())
        new._methods.update(self._methods)
        for name, value in slots.items():
            setattr(new, name, value)
        return new

    # -- methods as source ----------------------------------------------------

    def define_method(
        self, selector: str, source: str, *, author: str = ARCHITECT, cycle: str | None = None
    ) -> MethodRecord:
        """Install (or replace) an own method; the old version goes into history."""
        check_selector(selector)
        parse_method(selector, source)  # refuse records that could never run
        current = self._methods.get(selector)
        if current is None:
            record = MethodRecord(selector, source, 1, author, cycle)
        else:
            record = MethodRecord(selector, source, current.version + 1, author, cycle, current.history)
        self._methods[selector] = record
        self._p_changed = True
        return record

    def revert_method(self, selector: str, version: int | None = None, *, author: str = ARCHITECT) -> MethodRecord:
        """Make an earlier version current again, as a new version.

        The revert is itself recorded (``reverted_from``), so it can be undone
        by another revert; nothing in the history is ever lost.
        """
        current = self._methods.get(selector)
        if current is None:
            raise MessageNotUnderstood(self, selector)
        earlier = current.previous
        if not earlier:
            raise NoSuchVersion(f"{selector!r} has only one version; nothing to revert to")
        if version is None:
            target = earlier[-1]
        else:
            matches = [r for r in earlier if r.version == version]
            if not matches:
                known = ", ".join(str(r.version) for r in earlier)
                raise NoSuchVersion(f"{selector!r} has no earlier version {version} (earlier: {known})")
            target = matches[0]
        record = MethodRecord(
            selector, target.source, current.version + 1, author, target.cycle, current.history, target.version
        )
        self._methods[selector] = record
        self._p_changed = True
        self._method_changed(selector)
        return record

    def forget_method(self, selector: str) -> MethodRecord:
        """Remove an own method, so the message is no longer understood here."""
        record = self._methods.pop(selector, None)
        if record is None:
            raise MessageNotUnderstood(self, selector)
        self._p_changed = True
        self._method_changed(selector)
        return record

    def set_method_limits(self, selector: str = "*", **limits: float) -> dict[str, dict[str, float]]:
        """The Architect's limits for this object's stored-method calls, for one
        selector or ``*`` (all): ``wall_seconds``, ``cpu_seconds``, ``memory_bytes``;
        none given clears them. The sandbox reads them per call; a stored
        method cannot call this (it sees only its objects' slots and methods)."""
        if selector != "*":
            check_selector(selector)
        unknown = set(limits) - {"wall_seconds", "cpu_seconds", "memory_bytes"}
        if unknown:
            raise InvalidName(f"unknown limit(s) {', '.join(sorted(unknown))}: use wall_seconds, cpu_seconds, memory_bytes")
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidName(f"limit {name} must be a positive number, not {value!r}")
        table = dict(self.__dict__.get("_limits") or {})
        if limits:
            table[selector] = dict(limits)
        else:
            table.pop(selector, None)
        self._limits = table
        return table

    def _method_changed(self, selector: str) -> None:
        """Tell the registered owners (the skill index) that an own method changed,
        so they follow in the same transaction."""
        jar = self._p_jar
        if jar is None or self._p_oid is None:
            return
        root = jar.root()
        for hook in HOOKS.method_changed:
            hook(root, self, selector)


RESERVED_NAMES = frozenset(n for n in dir(UvmObject) if not n.startswith("_"))


def _as_parents(value: Any) -> tuple[UvmObject, ...]:
    if isinstance(value, UvmObject):
        value = (value,)
    try:
        parents = tuple(value)
    except TypeError:
        raise InvalidName(f"parents must be UvmObjects, got {type(value).__name__}") from None
    for parent in parents:
        if not isinstance(parent, UvmObject):
            raise InvalidName(f"parents must be UvmObjects, got {type(parent).__name__}")
    return parents
