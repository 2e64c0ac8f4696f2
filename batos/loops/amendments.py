"""The philosophical loop: persistent dissonance → a codex amendment the Architect decides.

When the mean of the last ``window`` dissonance signals reaches ``threshold``
(and no proposal is pending), ALFRED drafts a structured proposal: which
persona, which codex field, the old and new text, and a rationale, with the
signals that triggered it as evidence. It is stored as *pending*. Nothing
changes the codex until the Architect approves it; the approval applies it in
one transaction, the previous codex kept in the persona's ``codex_history``.
Personas read their codex at every call, so the next cycle uses it at once.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from persistent.mapping import PersistentMapping

from batos.core.errors import BatosError
from batos.core.roster import PERSONA_ROOTS
from batos.substrate.llm import json_object
from batos.substrate.personas import Personas, system_prompt
from batos.core.txn import reading, transact

Log = Callable[..., None]
FIELDS = ("core_identity", "mission", "method")

PROPOSAL_SCHEMA = {
    "type": "object",
    "properties": {
        "persona": {"type": "string", "enum": list(PERSONA_ROOTS)},
        "field": {"type": "string", "enum": list(FIELDS)},
        "new_text": {"type": "string", "minLength": 10, "maxLength": 600},
        "rationale": {"type": "string", "minLength": 10, "maxLength": 600},
    },
    "required": ["persona", "field", "new_text", "rationale"],
}

DRAFT_PROMPT = """The system has been in persistent cognitive dissonance: the last {count} interactions scored
a mean dissonance of {mean:.2f} (1 = the logical and relational views conflict, or work keeps failing).
Evidence:
{evidence}

The personas' current codices:
{codices}

Propose ONE amendment to one persona's codex field ({fields}) that would reduce this dissonance.
Answer as JSON: {{"persona": "...", "field": "...", "new_text": "...", "rationale": "..."}}"""


class AmendmentError(BatosError):
    """A proposal that cannot be decided, or a codex that cannot be reverted."""


@dataclass(frozen=True)
class AmendmentConfig:
    threshold: float = 0.6
    window: int = 5


def _evidence_start(orchestrator: Any) -> int:
    """Signals already used as evidence by an earlier proposal are not counted again."""
    return max((p["evidence_upto"] for p in orchestrator.proposals.values()), default=0)


class Amendments:
    def __init__(self, db: Any, personas: Personas, config: AmendmentConfig = AmendmentConfig(), log: Log | None = None) -> None:
        self.db = db
        self.personas = personas
        self.config = config
        self.log = log or (lambda event, **fields: None)

    def check(self) -> dict[str, Any] | None:
        """Draft a proposal if recent dissonance is persistently high and none is pending."""
        with reading(self.db) as root:
            orchestrator = root["orchestrator"]
            if any(p["status"] == "pending" for p in orchestrator.proposals.values()):
                return None
            signals = [dict(s) for s in orchestrator.dissonance]
            start = _evidence_start(orchestrator)
            recent = signals[max(start, len(signals) - self.config.window):]
            if len(recent) < self.config.window or statistics.fmean(s["score"] for s in recent) < self.config.threshold:
                return None
            mean = statistics.fmean(s["score"] for s in recent)
            lines = []
            for s in recent:
                detail = ""
                if s["source"] == "contrapunto" and s["ref"] in orchestrator.contrapunti:
                    detail = f" question: {orchestrator.contrapunti[s['ref']]['question'][:160]}"
                elif s["source"] == "cycle" and s["ref"] in orchestrator.cycles:
                    cycle = orchestrator.cycles[s["ref"]]
                    detail = f" {cycle.selector}: {(cycle.outcome or {}).get('reason', '')[:160]}"
                lines.append(f"- {s['source']} {s['ref']} dissonance {s['score']:.2f};{detail}")
            codices = "\n".join(f"{p}: " + json.dumps({f: root[r].codex[f] for f in FIELDS}) for p, r in PERSONA_ROOTS.items())
            alfred_system = system_prompt(root, "ALFRED")
            upto = len(signals)
        text = self.personas.speaker("ALFRED").complete(
            alfred_system, DRAFT_PROMPT.format(count=len(recent), mean=mean, evidence="\n".join(lines), codices=codices, fields=", ".join(FIELDS)),
            max_tokens=300, temperature=0.2, json_schema=PROPOSAL_SCHEMA)
        draft, problem = parse_draft(text)
        proposal_id = uuid.uuid4().hex[:8]

        def work(root: Any) -> dict[str, Any]:
            record: dict[str, Any] = {"id": proposal_id, "created_at": time.time(), "evidence": lines, "mean": round(mean, 4),
                                      "evidence_upto": upto, "decided_at": None, "decision_reason": None}
            if draft is None:
                record.update(status="unusable", error=problem)  # kept, so the same evidence is not re-drafted forever
            else:
                old = root[PERSONA_ROOTS[draft["persona"]]].codex[draft["field"]]
                if old == draft["new_text"]:
                    record.update(status="unusable", error="the draft repeats the current text", **draft, old_text=old)
                else:
                    record.update(status="pending", old_text=old, **draft)
            root["orchestrator"].proposals[proposal_id] = PersistentMapping(record)
            return record

        record = transact(self.db, work, note=f"proposal {proposal_id}")
        self.log("proposal", proposal=proposal_id, status=record["status"], persona=record.get("persona"), field=record.get("field"),
                 mean=record["mean"], error=record.get("error"))
        return record


def parse_draft(text: str) -> tuple[dict[str, str] | None, str]:
    try:
        data = json_object(text)
        draft = {k: str(data[k]).strip() for k in ("persona", "field", "new_text", "rationale")}
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"unusable draft ({type(exc).__name__}): {text[:80]!r}"
    draft["persona"] = draft["persona"].upper()
    if draft["persona"] not in PERSONA_ROOTS:
        return None, f"unknown persona {draft['persona']!r}"
    if draft["field"] not in FIELDS:
        return None, f"codex field {draft['field']!r} cannot be amended (only {', '.join(FIELDS)})"
    if len(draft["new_text"]) < 10:
        return None, "the new text is too short"
    return draft, ""


def list_proposals(db: Any, status: str | None = "pending") -> list[dict[str, Any]]:
    """Proposals with *status* (None: all), oldest first."""
    with reading(db) as root:
        found = [dict(p) for p in root["orchestrator"].proposals.values()]
    return sorted((p for p in found if status in (None, p["status"])), key=lambda p: p["created_at"])


def decide(db: Any, proposal_id: str, approve: bool, reason: str = "") -> dict[str, Any]:
    """The Architect's decision, in one transaction; approval applies the amendment."""

    def work(root: Any) -> dict[str, Any]:
        proposal = root["orchestrator"].proposals.get(proposal_id)
        if proposal is None:
            raise AmendmentError(f"no proposal {proposal_id!r}")
        if proposal["status"] != "pending":
            raise AmendmentError(f"proposal {proposal_id} is {proposal['status']}, not pending")
        if approve:
            persona = root[PERSONA_ROOTS[proposal["persona"]]]
            if persona.codex[proposal["field"]] != proposal["old_text"]:
                raise AmendmentError(f"{proposal['persona']}'s {proposal['field']} changed since proposal {proposal_id} was drafted; reject it")
            persona.codex_history.append({"codex": dict(persona.codex), "at": time.time(), "proposal": proposal_id,
                                          "change": f"{proposal['field']} amended"})
            amended = PersistentMapping(persona.codex)
            amended[proposal["field"]] = proposal["new_text"]
            persona.codex = amended
        proposal["status"] = "approved" if approve else "rejected"
        proposal["decided_at"] = time.time()
        proposal["decision_reason"] = reason or None
        return dict(proposal)

    return transact(db, work, note=f"proposal {proposal_id} {'approved' if approve else 'rejected'}")


def codex_history(db: Any, persona: str) -> list[dict[str, Any]]:
    slot = _persona_slot(persona)
    with reading(db) as root:
        return [dict(h) for h in root[slot].codex_history] + [{"codex": dict(root[slot].codex), "current": True}]


def revert_codex(db: Any, persona: str) -> dict[str, Any]:
    """Restore the codex the persona had before its latest amendment (one transaction)."""
    slot = _persona_slot(persona)

    def work(root: Any) -> dict[str, Any]:
        obj = root[slot]
        if not obj.codex_history:
            raise AmendmentError(f"{persona.upper()}'s codex has never been amended")
        previous = obj.codex_history.pop()
        obj.codex = PersistentMapping(previous["codex"])
        return dict(previous)

    return transact(db, work, note=f"codex revert {persona}")


def _persona_slot(persona: str) -> str:
    slot = PERSONA_ROOTS.get(persona.upper())
    if slot is None:
        raise AmendmentError(f"unknown persona {persona!r}; known: {', '.join(PERSONA_ROOTS)}")
    return slot
