"""How the object model tells its owners about what it cannot handle itself.

The object model sits at the bottom of BAT OS and imports nothing above it,
yet two of its events need higher layers: a message nobody understands
becomes a cognitive cycle (:mod:`batos.cognition`), and a learned method that
is reverted or forgotten must be re-indexed in memory. The owners of those
concerns register callables here; with none registered, the object model
simply refuses (``MessageNotUnderstood``) and changes nothing else.

Stored methods are the third: the object model holds their source but never
runs it. The sandbox's method runtime registers ``run_method``; without it a
stored method refuses to run (``MethodsNotRunnable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from batos.core.uvm import MethodRecord, UvmObject


@dataclass(frozen=True)
class Learning:
    """What ``_doesNotUnderstand_`` returns to the kernel: a cycle to wait for."""

    cycle_id: str


# (root, receiver, selector, args, kwargs, intent) -> Learning, or raise MessageNotUnderstood
NotUnderstood = Callable[[Any, "UvmObject", str, list[Any], dict[str, Any], "str | None"], Learning]
# (root, owner, selector): an own method of *owner* was reverted or forgotten
MethodChanged = Callable[[Any, "UvmObject", str], None]
# (receiver, owner, record, args, kwargs) -> result: run a stored method (the sandbox's runtime)
RunMethod = Callable[["UvmObject", "UvmObject", "MethodRecord", list[Any], dict[str, Any]], Any]


@dataclass
class Hooks:
    not_understood: NotUnderstood | None = None
    run_method: RunMethod | None = None
    method_changed: list[MethodChanged] = field(default_factory=list)

    def on_not_understood(self, hook: NotUnderstood) -> None:
        self.not_understood = hook

    def on_method_changed(self, hook: MethodChanged) -> None:
        if hook not in self.method_changed:  # installing twice must not index twice
            self.method_changed.append(hook)


HOOKS = Hooks()
