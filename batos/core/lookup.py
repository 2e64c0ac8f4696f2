"""The hot path of every message send: finding a name on a ``UvmObject``.

Three choices, each measured with ``bench/bench_image.py`` (CPython 3.11):

- A ``UvmObject`` keeps its slots as instance attributes and uses Python's
  generic attribute lookup (``object.__getattribute__``) rather than
  ``Persistent``'s, whose wrapper costs every read about twice a plain one.
  An own slot is then read straight from ``__dict__``. A ghost's
  ``__dict__`` is empty until it is loaded, so every read of a ghost misses
  and reaches code that calls :func:`loaded`. (Plain reads therefore do not
  bump an object in ZODB's LRU cache; loading and writing it do.)
- A name the receiver does not hold itself would make CPython 3.11 raise an
  ``AttributeError`` before ``__getattr__`` runs, which alone costs about
  fifteen plain reads. So the first time a name is found through a parent,
  ``UvmObject.__getattr__`` installs an :class:`Inherited` descriptor for it
  on the class, and later reads go straight to the walk below.
- The walk follows a chain of single parents (the common shape) without the
  general depth-first walk's bookkeeping.
"""

from __future__ import annotations

from typing import Any

from batos.core.errors import MessageNotUnderstood

MISSING = object()

# A chain of single parents longer than this is left to the general walk,
# which visits each object once (so a cyclic chain terminates).
CHAIN = 64


def loaded(obj: Any) -> dict[str, Any]:
    """*obj*'s own attributes, after loading it: a ghost's ``__dict__`` is empty."""
    state = obj.__dict__
    if not state:
        obj._p_activate()
        state = obj.__dict__
    return state


class Inherited:
    """Stands on the class for a slot or method name that objects inherit.

    It is a non-data descriptor, so an own slot of that name (an instance
    attribute) still wins and this is consulted only when that missed. It
    caches no value: every read walks the live parents, so it never goes
    stale; the class only learns which names deserve a direct path.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, receiver: Any, owner: type | None = None) -> Any:
        if receiver is None:
            return self
        name = self.name
        state = receiver.__dict__
        if not state:  # a ghost: its own slots are known only once it is loaded
            state = loaded(receiver)
            if name in state:
                return state[name]
        obj = receiver
        depth = 0
        while True:
            record = state["_methods"].get(name)
            if record is not None:
                return obj._bound(record, receiver)
            parents = state.get("parents", ())
            if len(parents) != 1 or depth == CHAIN:
                break
            obj = parents[0]
            depth += 1
            state = obj.__dict__ or loaded(obj)
            value = state.get(name, MISSING)
            if value is not MISSING:
                return value
        if not parents:
            raise MessageNotUnderstood(receiver, name)
        # A branch, or a chain so long it may be a cycle: the general walk.
        holder, found, is_method = receiver._resolve(name)
        return holder._bound(found, receiver) if is_method else found
