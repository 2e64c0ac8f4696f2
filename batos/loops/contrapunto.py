"""Socratic Contrapunto: BRICK answers, ROBIN builds on it, and the gap is measured.

The dissonance of an exchange is the mean of two independent readings, so
that neither a model's mood nor an embedding's blind spot decides alone:

- *judged*: ROBIN's own verdict, a JSON answer ``{"dissonance": 0..1, "reason"}``
  (grammar-constrained on the llama.cpp backend); an unusable answer is
  recorded as such and leaves only the other reading;
- *distance*: ``1 - cosine`` of the two answers' MiniLM embeddings, clamped
  to [0, 1] — answers that talk past each other land far apart.

Cycles have a dissonance too (:mod:`batos.cognition.dissonance`): every rejected
attempt raises it, a failed cycle most of all. Every score is appended to the
orchestrator's ``dissonance`` signals, which the philosophical loop watches.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import numpy as np
from persistent.mapping import PersistentMapping

from batos import memory
from batos.cognition.dissonance import record_signal
from batos.substrate.llm import unit_score
from batos.substrate.personas import Personas, system_prompt
from batos.core.txn import reading, transact

Progress = Callable[[str, str], None]

JUDGEMENT_SCHEMA = {
    "type": "object",
    "properties": {"dissonance": {"type": "number", "minimum": 0, "maximum": 1}, "reason": {"type": "string"}},
    "required": ["dissonance", "reason"],
}

BRICK_PROMPT = """Question from the Architect: {question}

Answer with the logic of it: what is the case and how it works or would be done. At most 120 words."""

ROBIN_PROMPT = """Question from the Architect: {question}

BRICK answered (the logical view):
{brick}

Give the relational view: why it matters and to whom. You must build on BRICK's answer explicitly:
begin with "Building on BRICK:" and name the part of his answer you extend or question. At most 120 words."""

REMINDER = """

Your previous answer did not build on BRICK's. Answer again, beginning with "Building on BRICK:"."""

JUDGE_PROMPT = """Two answers to the question: {question}

BRICK (logic): {brick}

ROBIN (empathy): {robin}

How far apart are the logical and the relational views? 0 means they agree and reinforce each other,
1 means they conflict. Answer as JSON: {{"dissonance": <number 0..1>, "reason": "<one sentence>"}}"""


def builds_on(robin: str) -> bool:
    return robin.lower().lstrip(" *\"'").startswith("building on brick")


def embedding_distance(a: str, b: str) -> float:
    vectors = memory.Embedder.encode([a, b])
    return float(np.clip(1.0 - float(vectors[0] @ vectors[1]), 0.0, 1.0))


def combine(judged: float | None, distance: float) -> float:
    return round(distance if judged is None else (judged + distance) / 2, 4)


class Contrapunto:
    """Runs one exchange and stores it (image + memory) in one transaction."""

    def __init__(self, db: Any, personas: Personas, answer_tokens: int = 200) -> None:
        self.db = db
        self.personas = personas
        self.answer_tokens = answer_tokens

    def run(self, question: str, progress: Progress | None = None, origin: str = "architect") -> dict[str, Any]:
        question = question.strip()
        if not question:
            raise ValueError("contemplate needs a question (--intent \"...\")")
        say = progress or (lambda state, detail: None)
        with reading(self.db) as root:
            pins = self.personas.pin(root)
            brick_system, robin_system = system_prompt(root, "BRICK"), system_prompt(root, "ROBIN")
        say("BRICK", "the logical view")
        brick = self.personas.speaker("BRICK", pins).complete(
            brick_system, BRICK_PROMPT.format(question=question), max_tokens=self.answer_tokens, temperature=0.3).strip()
        say("ROBIN", "the relational view, building on BRICK")
        robin_model = self.personas.speaker("ROBIN", pins)
        robin_prompt = ROBIN_PROMPT.format(question=question, brick=brick)
        robin = robin_model.complete(robin_system, robin_prompt, max_tokens=self.answer_tokens, temperature=0.5).strip()
        if not builds_on(robin):  # one reminder: the exchange is worthless if ROBIN ignores BRICK
            robin = robin_model.complete(robin_system, robin_prompt + REMINDER, max_tokens=self.answer_tokens, temperature=0.3).strip()
        verdict = robin_model.complete(robin_system, JUDGE_PROMPT.format(question=question, brick=brick, robin=robin),
                                       max_tokens=160, temperature=0.0, json_schema=JUDGEMENT_SCHEMA)
        judged, reason = unit_score(verdict, "dissonance")
        distance = embedding_distance(brick, robin)
        score = combine(judged, distance)
        exchange_id = uuid.uuid4().hex[:12]
        text = f"Question: {question}\n\nBRICK: {brick}\n\nROBIN: {robin}"
        prepared = memory.prepare(f"contrapunto:{exchange_id}", text, title=question[:120], source="contrapunto", kind="contrapunto")
        record = {
            "id": exchange_id, "question": question, "brick": brick, "robin": robin, "builds_on": builds_on(robin),
            "judged": judged, "judge_reason": reason, "distance": round(distance, 4), "dissonance": score,
            "origin": origin, "pins": pins, "at": time.time(),
        }

        def work(root: Any) -> None:
            orchestrator = root["orchestrator"]
            orchestrator.contrapunti[exchange_id] = PersistentMapping(record)
            record_signal(orchestrator, score, "contrapunto", exchange_id)
            memory.store(root["knowledge_catalog"], prepared)

        transact(self.db, work, note=f"contrapunto {exchange_id}")
        say("DISSONANCE", f"{score:.2f} (judged {judged if judged is not None else '-'}, distance {distance:.2f})")
        return record
