"""The slower loops, wired together, and the messages the kernel answers with them.

The kernel answers these messages itself (they are not methods in the image):

- ``genesis contemplate --intent QUESTION`` — a Socratic Contrapunto;
- ``orchestrator goals`` / ``proposals`` / ``trainings`` / ``dissonance`` — the loops' records;
- ``orchestrator approve ID`` / ``orchestrator reject ID [REASON]`` — the Architect's decision on a codex amendment.

Everything slow that follows an interaction — ALFRED's judgement, training,
drafting an amendment, the autotelic goals — runs on one background thread
(the *slow lane*), which waits whenever an Architect's message is in flight,
so none of it delays a reply.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from batos.cognition.report import cycle_report, format_cycle, list_cycles
from batos.loops.amendments import AmendmentConfig, Amendments, decide, list_proposals
from batos.loops.contrapunto import Contrapunto
from batos.cognition.cycle import CycleEngine
from batos.core.errors import BatosError, ErrorCode
from batos.core.image import Image
from batos.core.metalog import MetaLog
from batos.loops.motivator import Motivator, MotivatorConfig, list_goals
from batos.substrate.personas import Personas
from batos.loops.strategic import StrategicConfig, Strategist
from batos.core.txn import reading

Progress = Callable[[str, str], None]


class LoopError(BatosError):
    """A loop message the kernel refuses (bad arguments)."""

    code = ErrorCode.BAD_ARGUMENTS


@dataclass(frozen=True)
class LoopsConfig:
    motivator: MotivatorConfig = MotivatorConfig()
    strategic: StrategicConfig = StrategicConfig()
    amendments: AmendmentConfig = AmendmentConfig()
    poll_seconds: float = 1.0


@dataclass
class Activity:
    """What the kernel tells the loops: is the Architect being served, and since when is it quiet."""

    in_flight: Callable[[], int] = lambda: 0
    last: float = field(default_factory=time.monotonic)

    def busy(self) -> bool:
        return self.in_flight() > 0

    def touch(self) -> None:
        self.last = time.monotonic()


class Loops:
    def __init__(self, image: Image, personas: Personas, engine: CycleEngine | None, config: LoopsConfig = LoopsConfig(),
                 log: MetaLog | None = None) -> None:
        self.db = image.db
        self.config = config
        self.metalog = log
        self.activity = Activity()
        self.contrapunto = Contrapunto(self.db, personas)
        self.strategist = Strategist(image, personas, config.strategic, self._log)
        self.amendments = Amendments(self.db, personas, config.amendments, self._log)
        self.motivator = Motivator(self.db, personas, engine, self.contrapunto, config.motivator, self._log)
        self._jobs: queue.Queue[Callable[[], Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # the messages the kernel answers with the loops, by (target, selector)
        self._handlers: dict[tuple[str, str], Callable[[list[Any], str | None, Progress | None], Any]] = {
            ("genesis", "contemplate"): self._contemplate,
            ("orchestrator", "goals"): lambda args, intent, progress: list_goals(self.db),
            ("orchestrator", "proposals"): lambda args, intent, progress: list_proposals(self.db, args[0] if args else "pending"),
            ("orchestrator", "approve"): lambda args, intent, progress: self._decide(args, True),
            ("orchestrator", "reject"): lambda args, intent, progress: self._decide(args, False),
            ("orchestrator", "trainings"): lambda args, intent, progress: self._read(lambda o: [dict(t) for t in o.trainings]),
            ("orchestrator", "dissonance"): lambda args, intent, progress: self._read(lambda o: [dict(s) for s in o.dissonance][-50:]),
            # the console's :cycles and :cycle ID (`batos cycles` reads the image directly)
            ("orchestrator", "cycles"): lambda args, intent, progress: self._view(lambda root: list_cycles(root, 20, *args[:1])),
            ("orchestrator", "cycle"): lambda args, intent, progress: self._view(
                lambda root: format_cycle(cycle_report(root, str(args[0]) if args else ""))),
        }
        self._selectors = frozenset(selector for _, selector in self._handlers)
        if engine is not None:
            engine.finished_hooks.append(lambda cycle_id, outcome: self._jobs.put(lambda: self.after_cycle(cycle_id)))

    def _view(self, view: Callable[[Any], Any]) -> Any:
        with reading(self.db) as root:
            return view(root)

    def _log(self, event: str, **fields: Any) -> None:
        if self.metalog is not None:
            self.metalog.record(event, **fields)

    # -- what follows an interaction ---------------------------------------------------

    def after_cycle(self, cycle_id: str) -> None:
        judgement = self.strategist.judge_cycle(cycle_id)
        if judgement is not None and judgement["golden"]:
            self.strategist.maybe_train("BRICK")
        self.amendments.check()

    def after_contrapunto(self, exchange_id: str) -> None:
        if self.strategist.judge_contrapunto(exchange_id) is not None:
            for persona in ("BRICK", "ROBIN"):
                self.strategist.maybe_train(persona)
        self.amendments.check()

    # -- the slow lane -----------------------------------------------------------------

    def gate(self) -> None:
        """Wait while the Architect is being served: self-generated work always goes second."""
        while self.activity.busy() and not self._stop.is_set():
            time.sleep(0.05)

    def step(self) -> bool:
        """One unit of slow work (a queued job, or a goal when idle long enough); whether any ran."""
        self.gate()
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            job = None
        if job is not None:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - the slow lane outlives any one job's failure
                self._log("loop_failed", error=f"{type(exc).__name__}: {exc}")
            return True
        motivator = self.config.motivator
        if motivator.enabled and time.monotonic() - self.activity.last >= motivator.idle_seconds:
            self.motivator.propose()
            return self.motivator.run_next(self.gate) is not None
        return False

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                if not self.step():
                    self._stop.wait(self.config.poll_seconds)

        self._thread = threading.Thread(target=run, name="batos-slow-lane", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        """For the kernel's status (and the console's toolbar)."""
        with reading(self.db) as root:
            orchestrator = root["orchestrator"]
            goals = [g["status"] for g in orchestrator.goals.values()]
            proposals = sum(1 for p in orchestrator.proposals.values() if p["status"] == "pending")
        return {"heartbeat": self.config.motivator.enabled, "goals_pending": goals.count("pending"), "goals_running": goals.count("running"),
                "proposals_pending": proposals, "slow_jobs_queued": self._jobs.qsize()}

    # -- messages the kernel answers with the loops --------------------------------------

    def served(self, in_flight: Callable[[], int]) -> None:
        """The kernel says how to count the Architect's messages in flight."""
        self.activity.in_flight = in_flight

    def touch(self) -> None:
        """An Architect's message just ended: the idle clock restarts."""
        self.activity.touch()

    def selectors(self) -> frozenset[str]:
        """The selectors some handler answers, whatever its receiver."""
        return self._selectors

    def handler(self, target: str, selector: str) -> Callable[[list[Any], str | None, Progress | None], Any] | None:
        return self._handlers.get((target, selector))

    def _read(self, pick: Callable[[Any], Any]) -> Any:
        with reading(self.db) as root:
            return pick(root["orchestrator"])

    def _contemplate(self, args: list[Any], intent: str | None, progress: Progress | None) -> dict[str, Any]:
        question = intent or (str(args[0]) if args else "")
        if not question.strip():
            raise LoopError("contemplate needs a question: --intent \"...\" (or one argument)")
        record = self.contrapunto.run(question, progress)
        self._jobs.put(lambda: self.after_contrapunto(record["id"]))
        return {k: record[k] for k in ("id", "question", "brick", "robin", "dissonance", "judged", "judge_reason", "distance")}

    def _decide(self, args: list[Any], approve: bool) -> dict[str, Any]:
        if not args:
            raise LoopError(f"{'approve' if approve else 'reject'} needs a proposal id (see :proposals)")
        proposal = decide(self.db, str(args[0]), approve, " ".join(str(a) for a in args[1:]))
        self._log("proposal", proposal=proposal["id"], status=proposal["status"], persona=proposal.get("persona"), field=proposal.get("field"))
        return proposal
