"""Stop sequences: where a model's answer is cut, for every backend alike.

Standard library only: the host process (:mod:`batos.substrate.hostchild`)
imports it and must start fast.
"""

from __future__ import annotations


def held_back(text: str, stop: list[str]) -> int:
    """Length of the longest tail of *text* that begins some stop sequence (not yet safe to stream)."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """*text* up to the first stop sequence, and whether one was found."""
    hits = [text.index(s) for s in stop if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)
