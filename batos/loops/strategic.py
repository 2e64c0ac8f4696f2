"""The strategic loop: ALFRED judges, the best work becomes a golden dataset, a persona is fine-tuned.

ALFRED scores each completed interaction with a constrained JSON verdict.
Interactions at or above the threshold become training examples for the
persona that produced them (BRICK's methods and answers, ROBIN's answers).
When a persona has gathered ``dataset_size`` new examples, a LoRA adapter is
trained on its model in a separate process (:mod:`batos.substrate.training`), stored as
blobs, and bound to the persona in the same transaction that records the
training — cycles already running keep the adapter they pinned. A training
that fails, times out or produces nothing swaps nothing; the failure is
recorded. ``batos adapters revert PERSONA`` restores the previous adapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from persistent.list import PersistentList

from batos.cognition.artifacts import installed_source
from batos.cognition.states import CycleState
from batos.cognition.step import call_text
from batos.loops.contrapunto import BRICK_PROMPT, ROBIN_PROMPT
from batos.core.image import Image
from batos.substrate.llm import unit_score
from batos.substrate.adapters import import_adapter
from batos.substrate.models import locate_in
from batos.substrate.personas import Personas, system_prompt
from batos.core.txn import reading, transact
from batos.core.refs import name_of

Log = Callable[..., None]

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}

JUDGE_PROMPT = """Judge this piece of work by {persona} for the Architect.

Task: {prompt}

Work:
{completion}

Score its quality from 0 (useless or wrong) to 1 (exemplary, worth learning from).
Answer as JSON: {{"score": <number 0..1>, "reason": "<one sentence>"}}"""


@dataclass(frozen=True)
class StrategicConfig:
    judge_threshold: float = 0.7
    dataset_size: int = 8
    train_steps: int = 30
    rank: int = 8
    train_timeout: float = 1800.0


class Strategist:
    def __init__(self, image: Image, personas: Personas, config: StrategicConfig = StrategicConfig(), log: Log | None = None) -> None:
        self.image = image
        self.db = image.db
        self.personas = personas
        self.config = config
        self.log = log or (lambda event, **fields: None)

    # -- judging --------------------------------------------------------------------

    def judge_cycle(self, cycle_id: str) -> dict[str, Any] | None:
        """Judge a completed cycle's method once; a good one becomes a BRICK example."""
        with reading(self.db) as root:
            cycle = root["orchestrator"].cycles[cycle_id]
            if cycle.state != CycleState.COMPLETE or cycle.responds_to("judgement"):
                return None
            source = installed_source(cycle)
            call = call_text(cycle.args, cycle.kwargs)
            example = {"persona": "BRICK", "system": system_prompt(root, "BRICK"), "ref": f"cycle:{cycle_id}",
                       "prompt": f"Teach {name_of(cycle.target)} to answer {cycle.selector}({call}). "
                                 f"Intent: {cycle.intent or '(infer it from the name)'}",
                       "completion": f"```python\n{source.strip()}\n```"}
        judgement = self._judge(example)

        def work(root: Any) -> None:
            cycle = root["orchestrator"].cycles[cycle_id]
            cycle.judgement = judgement
            self._keep(root, example, judgement)

        transact(self.db, work, note=f"judge cycle {cycle_id}")
        return judgement

    def judge_contrapunto(self, exchange_id: str) -> dict[str, Any] | None:
        """Judge each side of an exchange; good answers become BRICK and ROBIN examples."""
        with reading(self.db) as root:
            record = root["orchestrator"].contrapunti[exchange_id]
            if "judgements" in record:
                return None
            examples = [
                {"persona": "BRICK", "system": system_prompt(root, "BRICK"), "ref": f"contrapunto:{exchange_id}",
                 "prompt": BRICK_PROMPT.format(question=record["question"]), "completion": record["brick"]},
                {"persona": "ROBIN", "system": system_prompt(root, "ROBIN"), "ref": f"contrapunto:{exchange_id}",
                 "prompt": ROBIN_PROMPT.format(question=record["question"], brick=record["brick"]), "completion": record["robin"]},
            ]
        judgements = [self._judge(e) for e in examples]

        def work(root: Any) -> None:
            root["orchestrator"].contrapunti[exchange_id]["judgements"] = judgements
            for example, judgement in zip(examples, judgements):
                self._keep(root, example, judgement)

        transact(self.db, work, note=f"judge contrapunto {exchange_id}")
        return {"judgements": judgements}

    def _judge(self, example: dict[str, str]) -> dict[str, Any]:
        with reading(self.db) as root:
            alfred_system = system_prompt(root, "ALFRED")
        text = self.personas.speaker("ALFRED").complete(
            alfred_system, JUDGE_PROMPT.format(persona=example["persona"], prompt=example["prompt"], completion=example["completion"][:3000]),
            max_tokens=160, temperature=0.0, json_schema=JUDGE_SCHEMA)
        score, reason = unit_score(text, "score")
        self.log("judged", ref=example["ref"], persona=example["persona"], score=score, reason=reason)
        return {"score": score, "reason": reason, "at": time.time(), "golden": score is not None and score >= self.config.judge_threshold}

    def _keep(self, root: Any, example: dict[str, str], judgement: dict[str, Any]) -> None:
        if not judgement["golden"]:
            return
        golden = root["orchestrator"].golden
        if example["persona"] not in golden:
            golden[example["persona"]] = PersistentList()
        golden[example["persona"]].append({**example, "score": judgement["score"], "at": time.time()})

    # -- training ---------------------------------------------------------------------

    def pending(self, root: Any, persona: str) -> tuple[list[dict[str, Any]], int]:
        """Examples gathered since the persona's last successful training, and where they end."""
        orchestrator = root["orchestrator"]
        examples = list(orchestrator.golden.get(persona, ()))
        done = max((t["upto"] for t in orchestrator.trainings if t["persona"] == persona and t["status"] == "trained"), default=0)
        return [dict(e) for e in examples[done:]], len(examples)

    def maybe_train(self, persona: str) -> dict[str, Any] | None:
        with reading(self.db) as root:
            fresh, _upto = self.pending(root, persona)
        return self.train(persona) if len(fresh) >= self.config.dataset_size else None

    def train(self, persona: str) -> dict[str, Any]:
        """Train on the persona's golden examples; on success store and bind the adapter atomically."""
        with reading(self.db) as root:
            examples, upto = self.pending(root, persona)
            pin = self.personas.pin(root)[persona]
            location = locate_in(root, pin["model"]) if pin["backend"] == "transformers" else None
            count = sum(1 for t in root["orchestrator"].trainings if t["persona"] == persona)
        record: dict[str, Any] = {"persona": persona, "model": pin["model"], "examples": len(examples), "upto": upto, "at": time.time()}
        if location is None:
            return self._record({**record, "status": "skipped",
                                 "error": f"{persona} speaks through {pin['model']!r} ({pin['backend']}); LoRA training needs a transformers model"})
        self.log("training", persona=persona, model=pin["model"], examples=len(examples))
        with tempfile.TemporaryDirectory(prefix="batos-train-") as tmp:
            data, out, spec = Path(tmp) / "data.jsonl", Path(tmp) / "adapter", Path(tmp) / "spec.json"
            data.write_text("".join(json.dumps({k: e[k] for k in ("system", "prompt", "completion")}) + "\n" for e in examples))
            spec.write_text(json.dumps({"base": str(location.path), "data": str(data), "out": str(out),
                                        "steps": self.config.train_steps, "rank": self.config.rank}))
            try:
                done = subprocess.run([sys.executable, "-m", "batos.substrate.training", str(spec)], capture_output=True, text=True,
                                      timeout=self.config.train_timeout, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            except subprocess.TimeoutExpired:
                return self._record({**record, "status": "failed", "error": f"training ran past {self.config.train_timeout:g}s"})
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
            if done.returncode != 0 or "error" in result or not (out / "adapter_config.json").is_file():
                return self._record({**record, "status": "failed", "error": result.get("error", f"exit status {done.returncode}")})
            name = f"{persona.lower()}-lora-{count + 1}"
            trained = {**record, "status": "trained", "adapter": name, "metrics": result}
            import_adapter(self.image, out, name, pin["model"], [persona], origin="trained", metrics=result,
                           reason=f"strategic loop: trained on {len(examples)} golden examples",
                           also=lambda root: root["orchestrator"].trainings.append(trained))
        self.log("trained", persona=persona, adapter=name, seconds=result.get("seconds"), device=result.get("device"),
                 loss_first=result.get("loss_first"), loss_last=result.get("loss_last"))
        return trained

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        transact(self.db, lambda root: root["orchestrator"].trainings.append(record), note=f"training {record['status']}")
        self.log("training_" + record["status"], persona=record["persona"], error=record.get("error"))
        return record
