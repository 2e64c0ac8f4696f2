"""The cycle's states and the one table of the moves between them.

Every transition the engine makes is checked against :data:`TRANSITIONS`,
which is this diagram (a test reads it from here and compares)::

    IDLE -> DECOMPOSING -> DELEGATING -> SYNTHESIZING -> VALIDATING -> COMPLETE
    VALIDATING -> SYNTHESIZING
        (a rejected candidate goes back with its feedback while attempts are left)
    IDLE, DECOMPOSING, DELEGATING, SYNTHESIZING, VALIDATING -> FAILED
        (out of attempts, interrupted too often, a broken step or an unavailable model)

The image stores a state as its plain string (``"COMPLETE"``): a cycle object
then never references this module, images written before it existed read
unchanged, and a stored string compares equal to its member.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class CycleState(StrEnum):
    """A StrEnum (a ``str`` that formats as its value), so progress labels, log
    lines and error messages read exactly as the plain strings they replaced."""

    IDLE = "IDLE"  # the brief is written, nothing done yet
    DECOMPOSING = "DECOMPOSING"  # BRICK turns the brief into search queries
    DELEGATING = "DELEGATING"  # BABS retrieves related methods and notes
    SYNTHESIZING = "SYNTHESIZING"  # BRICK writes a candidate method
    VALIDATING = "VALIDATING"  # the guardian audits it, then a trial run
    COMPLETE = "COMPLETE"  # the method is installed
    FAILED = "FAILED"  # the cycle ended without a method; the target is untouched


TRANSITIONS: Mapping[CycleState, frozenset[CycleState]] = MappingProxyType({
    CycleState.IDLE: frozenset({CycleState.DECOMPOSING, CycleState.FAILED}),
    CycleState.DECOMPOSING: frozenset({CycleState.DELEGATING, CycleState.FAILED}),
    CycleState.DELEGATING: frozenset({CycleState.SYNTHESIZING, CycleState.FAILED}),
    CycleState.SYNTHESIZING: frozenset({CycleState.VALIDATING, CycleState.FAILED}),
    CycleState.VALIDATING: frozenset({CycleState.COMPLETE, CycleState.SYNTHESIZING, CycleState.FAILED}),
    CycleState.COMPLETE: frozenset(),
    CycleState.FAILED: frozenset(),
})
INITIAL = CycleState.IDLE
# a state nothing leaves: the cycle is over
TERMINAL = frozenset(state for state, successors in TRANSITIONS.items() if not successors)


class IllegalTransition(RuntimeError):
    """The engine tried a move the table does not allow: a bug in the engine, not
    something the model or the Architect did, so it is no ``BatosError``."""


def check_transition(src: CycleState, dst: CycleState) -> None:
    """Raise :class:`IllegalTransition` unless the table allows *src* -> *dst*."""
    if dst not in TRANSITIONS[src]:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "nothing (it is terminal)"
        raise IllegalTransition(f"illegal cycle transition {src} -> {dst}: {src} may only go to {allowed}")
