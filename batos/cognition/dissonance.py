"""Dissonance signals: the measure the philosophical loop watches.

A cycle's dissonance rises with every rejected attempt (audit or trial) and
most of all when it fails; the Socratic Contrapunto (:mod:`batos.loops.contrapunto`)
adds its own readings. Every score is appended to the orchestrator's
``dissonance`` signals, inside the transaction that produced it.
"""

from __future__ import annotations

import time
from typing import Any

from batos.cognition.artifacts import Verdict
from batos.cognition.states import CycleState

MAX_SIGNALS = 500  # the philosophical loop looks at a recent window; older signals are dropped


def cycle_dissonance(artifacts: list[dict[str, Any]], state: CycleState) -> float:
    """Rejected attempts (audit or trial) raise a cycle's dissonance; failing raises it most."""
    rejected = sum(1 for a in artifacts if a.get("kind") == Verdict.kind and a.get("feedback"))  # feedback: why it was rejected
    return round(min(1.0, 0.25 * rejected + (0.5 if state is CycleState.FAILED else 0.0)), 4)


def record_signal(orchestrator: Any, score: float, source: str, ref: str) -> None:
    """Inside a transaction: one dissonance signal for the philosophical loop."""
    signals = orchestrator.dissonance
    signals.append({"at": time.time(), "score": score, "source": source, "ref": ref})
    if len(signals) > MAX_SIGNALS:
        del signals[: len(signals) - MAX_SIGNALS]
