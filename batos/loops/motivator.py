"""The autotelic motivator: while the Architect is away, the system sets its own goals.

Goals are proposed from the image's state, never invented from nothing:

- ``compose``: a method was just learned → BRICK names a new message for the
  same object that would combine it with what the object already knows, and
  a normal cognitive cycle learns it;
- ``protocol``: a Contrapunto ended in high dissonance → a new Contrapunto
  asks what protocol would resolve that tension.

Every goal is a record in ``orchestrator.goals`` (visible with ``:goals`` and,
as events, in ``batos log``). At most ``goals_per_hour`` are started in any
hour, and a goal's cycle waits at every step while an Architect's message is
being served (the *gate*), so self-generated work never starves the Architect.
"""

from __future__ import annotations

import keyword
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from persistent.mapping import PersistentMapping

from batos.loops.contrapunto import Contrapunto
from batos.cognition.cycle import CycleEngine, open_cycle
from batos.substrate.llm import json_object
from batos.substrate.personas import Personas, system_prompt
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject
from batos.core.refs import name_of

Log = Callable[..., None]

COMPOSE_SCHEMA = {
    "type": "object",
    "properties": {"selector": {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,40}$"}, "intent": {"type": "string", "minLength": 10}},
    "required": ["selector", "intent"],
}

COMPOSE_PROMPT = """The object {target} just learned the method {selector} ({intent}).
Its methods: {methods}. Its slots: {slots}.
Invent ONE new message for {target} that combines {selector} with what it already has, and takes no arguments.
Answer as JSON: {{"selector": "<snake_case name>", "intent": "<what it returns, one sentence>"}}"""


@dataclass(frozen=True)
class MotivatorConfig:
    enabled: bool = True
    idle_seconds: float = 300.0
    goals_per_hour: int = 4
    protocol_threshold: float = 0.6


class Motivator:
    def __init__(self, db: Any, personas: Personas, engine: CycleEngine | None, contrapunto: Contrapunto,
                 config: MotivatorConfig = MotivatorConfig(), log: Log | None = None) -> None:
        self.db = db
        self.personas = personas
        self.engine = engine
        self.contrapunto = contrapunto
        self.config = config
        self.log = log or (lambda event, **fields: None)

    # -- proposing ------------------------------------------------------------------

    def propose(self) -> list[dict[str, Any]]:
        """Record goals for what the image's state suggests and no goal covers yet."""
        with reading(self.db) as root:
            orchestrator = root["orchestrator"]
            covered = {g["source"] for g in orchestrator.goals.values()}
            ideas = []
            for key, skill in orchestrator.skills.items():
                source = f"cycle:{skill['cycle']}"
                if source not in covered:
                    target = name_of(skill["owner"])
                    ideas.append({"kind": "compose", "source": source, "skill": key,
                                  "text": f"{skill['selector']} was just created on {target}; find a problem that combines it with existing ones"})
            for exchange in orchestrator.contrapunti.values():
                source = f"contrapunto:{exchange['id']}"
                if source not in covered and exchange["dissonance"] >= self.config.protocol_threshold and exchange["origin"] != "goal":
                    ideas.append({"kind": "protocol", "source": source,
                                  "text": f"the exchange on {exchange['question'][:80]!r} ended in dissonance {exchange['dissonance']:.2f}; it needs a protocol"})
        if not ideas:
            return []

        def work(root: Any) -> list[dict[str, Any]]:
            goals = root["orchestrator"].goals
            made = []
            for idea in ideas:
                goal_id = uuid.uuid4().hex[:8]
                record = {**idea, "id": goal_id, "status": "pending", "created_at": time.time(), "started_at": None, "result": None}
                goals[goal_id] = PersistentMapping(record)
                made.append(record)
            return made

        made = transact(self.db, work, note="goals proposed")
        for goal in made:
            self.log("goal", goal=goal["id"], status="proposed", kind=goal["kind"], text=goal["text"])
        return made

    # -- running --------------------------------------------------------------------

    def started_last_hour(self, now: float | None = None) -> int:
        now = now or time.time()
        with reading(self.db) as root:
            return sum(1 for g in root["orchestrator"].goals.values() if g["started_at"] and now - g["started_at"] < 3600)

    def run_next(self, gate: Callable[[], None] | None = None) -> dict[str, Any] | None:
        """Start the oldest pending goal unless this hour's allowance is spent; return it finished."""
        if self.started_last_hour() >= self.config.goals_per_hour:
            return None

        def claim(root: Any) -> dict[str, Any] | None:
            pending = sorted((g for g in root["orchestrator"].goals.values() if g["status"] == "pending"), key=lambda g: g["created_at"])
            if not pending:
                return None
            goal = pending[0]
            goal["status"], goal["started_at"] = "running", time.time()
            return dict(goal)

        goal = transact(self.db, claim, note="goal started")
        if goal is None:
            return None
        self.log("goal", goal=goal["id"], status="running", kind=goal["kind"])
        try:
            status, result = self._pursue(goal, gate)
        except Exception as exc:  # noqa: BLE001 - a goal that breaks is recorded, never fatal
            status, result = "failed", f"{type(exc).__name__}: {exc}"

        def finish(root: Any) -> dict[str, Any]:
            record = root["orchestrator"].goals[goal["id"]]
            record["status"], record["result"], record["finished_at"] = status, result, time.time()
            return dict(record)

        done = transact(self.db, finish, note=f"goal {goal['id']} {status}")
        self.log("goal", goal=goal["id"], status=status, kind=goal["kind"], result=result)
        return done

    def _pursue(self, goal: dict[str, Any], gate: Callable[[], None] | None) -> tuple[str, str]:
        if goal["kind"] == "protocol":
            with reading(self.db) as root:
                question = root["orchestrator"].contrapunti[goal["source"].split(":", 1)[1]]["question"]
            record = self.contrapunto.run(f"What protocol would resolve the tension in this question: {question}", origin="goal")
            return "done", f"contrapunto {record['id']} (dissonance {record['dissonance']:.2f})"
        if self.engine is None:
            return "failed", "no cycle engine: the kernel runs without a model"
        with reading(self.db) as root:
            skill = root["orchestrator"].skills[goal["skill"]]
            target: UvmObject = skill["owner"]
            prompt = COMPOSE_PROMPT.format(target=name_of(target), selector=skill["selector"], intent=skill["intent"] or "-",
                                           methods=", ".join(target.method_names()) or "-", slots=", ".join(target.slot_names()) or "-")
            brick_system = system_prompt(root, "BRICK")
        text = self.personas.speaker("BRICK").complete(brick_system, prompt, max_tokens=120, temperature=0.4, json_schema=COMPOSE_SCHEMA)
        try:
            data = json_object(text)
            selector, intent = str(data["selector"]).strip(), str(data["intent"]).strip()
        except (ValueError, KeyError, TypeError):
            return "failed", f"BRICK proposed no usable message: {text[:80]!r}"
        if not selector.isidentifier() or selector.startswith("_") or keyword.iskeyword(selector):
            return "failed", f"{selector!r} is not a usable message name"

        def start(root: Any) -> str | None:
            owner = root["orchestrator"].skills[goal["skill"]]["owner"]
            if owner.responds_to(selector):
                return None
            return open_cycle(root, owner, selector, [], {}, intent).cycle_id

        cycle_id = transact(self.db, start, note=f"goal {goal['id']}: cycle for {selector}")
        if cycle_id is None:
            return "failed", f"the object already understands {selector!r}"
        outcome = self.engine.drive(cycle_id, gate=gate)
        return ("done" if outcome["completed"] else "failed"), f"cycle {cycle_id} learning {selector}: {outcome['state']}"


def list_goals(db: Any) -> list[dict[str, Any]]:
    with reading(db) as root:
        return sorted((dict(g) for g in root["orchestrator"].goals.values()), key=lambda g: g["created_at"])
