"""What a cycle leaves behind, one artifact per step: brief, plan, context, checks, candidate, verdict.

In the image each artifact is a plain dict in the cycle's ``artifacts`` list:
``kind`` first, then the fields below under the same names, then ``at``, the
time the engine committed it. Plain dicts keep a cycle object free of
references to this module, so images written before these classes existed,
``batos log`` and anything reading an image directly see the records they
always did; the classes are how the engine writes and reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar


def digest(text: str) -> str:
    """The short content hash every artifact carries, so a log line names what it refers to."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Artifact:
    """The record conversion the artifact dataclasses share."""

    kind: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        """The dict stored in the image, without ``at`` (the engine stamps it when it commits)."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Read a stored record back; ``kind``, ``at`` and keys an older record lacks are left to the class."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


A = TypeVar("A", bound=Artifact)


def latest(records: Iterable[Mapping[str, Any]], kind: type[A]) -> A | None:
    """The most recent artifact of *kind* in a cycle's ``artifacts``, or None."""
    return next((kind.from_record(r) for r in reversed(list(records)) if r["kind"] == kind.kind), None)


def installed_source(cycle: Any) -> str:
    """The method a COMPLETE cycle installed: named in its outcome, or (cycles from
    before candidates were ranked) the source of its last verdict."""
    source = (cycle.outcome or {}).get("source")
    if source is None:
        verdict = latest(cycle.artifacts, Verdict)
        assert verdict is not None and verdict.source is not None, "a cycle completes only on an accepted verdict"
        source = verdict.source
    return str(source)


@dataclass(frozen=True)
class Brief(Artifact):
    """IDLE -> DECOMPOSING: the message to learn and the persona versions the whole cycle speaks through."""

    kind: ClassVar[str] = "brief"
    selector: str
    call: str
    intent: str
    target: str  # the receiver's OID, hex
    sha256: str
    pins: dict[str, dict[str, Any]] | None = None  # cycles briefed before personas were pinned have none


@dataclass(frozen=True)
class Plan(Artifact):
    """DECOMPOSING -> DELEGATING: BRICK's search queries (and the raw answer they came from)."""

    kind: ClassVar[str] = "plan"
    persona: str
    model: str
    queries: list[str]
    text: str
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Context(Artifact):
    """DELEGATING -> SYNTHESIZING: what retrieval found for the queries."""

    kind: ClassVar[str] = "context"
    persona: str
    snippets: list[dict[str, Any]]
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Checks(Artifact):
    """SYNTHESIZING: checks BRICK wrote from the intent before seeing any candidate, and those dropped (with why)."""

    kind: ClassVar[str] = "checks"
    persona: str
    model: str
    text: str
    checks: list[dict[str, Any]]  # {"text", "args", "kwargs", "expected", "source": "model", "dropped": None | why}
    sha256: str
    duration_s: float


@dataclass(frozen=True)
class Candidate(Artifact):
    """SYNTHESIZING -> VALIDATING: BRICK's answer for one attempt, as the model wrote it, and as repaired."""

    kind: ClassVar[str] = "candidate"
    persona: str
    model: str
    attempt: int
    text: str
    sha256: str
    duration_s: float
    index: int = 0  # which candidate of the attempt
    strategy: str = "first"  # "first", "feedback" (shown the last failure), "problems" (its problems without its code,
    # after a repeat) or "fresh" (a new start after the same failure twice)
    framing: str = "protocol"  # the prompt: "protocol" (the object protocol and the object) or "pasted function" (the spec alone)
    temperature: float | None = None
    seed: int | None = None
    repairs: list[str] = field(default_factory=list)  # the shape repairs made, in words
    source: str | None = None  # the method after the repairs; None: the text goes to the guardian as written
    shape: str = ""  # digest of the normalised AST: the same candidate written differently has the same shape
    duplicate_of: str | None = None  # "attempt.index" of the earlier candidate with the same shape: never trialled


@dataclass(frozen=True)
class Verdict(Artifact):
    """VALIDATING -> COMPLETE, FAILED or back to SYNTHESIZING: the audit and trial of one candidate."""

    kind: ClassVar[str] = "verdict"
    attempt: int
    accepted: bool
    audit_errors: list[str]
    trial: dict[str, Any] | None
    checks: list[str]
    source: str | None  # the extracted method; None when the answer held no usable one
    feedback: str  # why it was rejected; empty when it passed
    sha256: str
    index: int = 0
    failure: str = ""  # a coarse class of why it failed ("audit", "AttributeError", "wrong result", "duplicate"); empty if it passed
    passed_intent: bool = False  # ran cleanly and met every example of the Architect's
    score: float | None = None  # CodeT rank at the end of an attempt: agreeing candidates x model checks passed
    chosen: bool = False  # the candidate installed
