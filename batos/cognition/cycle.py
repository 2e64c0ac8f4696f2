"""The cognitive cycle: a message nobody understands becomes a learned method.

A cycle is an object in the image (a child of the ``cognitive_cycle``
prototype) holding the mission brief, its state, every artifact and the
whole transition history. The engine drives it from ``IDLE`` to ``COMPLETE``
or ``FAILED`` through the states of :mod:`batos.cognition.states`, where the
diagram is, checking every transition against its one table.

Each transition is its own small transaction, and model inference happens
between transactions, never inside one: a crash loses at most the step in
flight, and on restart :meth:`CycleEngine.resume_pending` carries every
unfinished cycle on from its last committed state. The last step — install
the method and record the outcome — is a single atomic commit; until then the
target object is never touched, so a failed cycle leaves it exactly as it was.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from persistent.list import PersistentList
from ZODB.DB import DB

from batos import memory
from batos.cognition.artifacts import Artifact, Brief, Candidate, Checks, Context, Plan, Verdict, digest
from batos.cognition.checks import CHECK_STOPS, checks_prompt, parse_checks
from batos.cognition.dissonance import cycle_dissonance, record_signal
from batos.cognition.guardian import audit
from batos.cognition.guardian.extraction import Rejected, extract_method
from batos.cognition.hooks import install as install_hooks
from batos.cognition.prompts import CODE_AVOID, CODE_STOPS, OBJECT_PROTOCOL, code_prompt, pasted_function, spec_prompt
from batos.cognition.repairs import normalised, repair
from batos.cognition.retrieval import retrieve, words
from batos.cognition.states import INITIAL, TERMINAL, CycleState, check_transition
from batos.cognition.step import StepInput, read_step
from batos.core.errors import MessageNotUnderstood
from batos.core.hooks import Learning
from batos.core.metalog import MetaLog
from batos.core.refs import name_of, oid_hex
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject
from batos.sandbox.runtime import MethodLimits, MethodRuntime, installed
from batos.sandbox.trial import Check, TrialResult, checks_from_intent, refusal_anticipated, run_trial
from batos.substrate.llm import ModelError
from batos.substrate.personas import Personas, system_prompt
from batos.wire.protocol import WRITING

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class CycleConfig:
    """How hard a cycle tries. An attempt is a round of candidates: the first
    round has one (greedy, the fast path: most methods pass at once), each later
    round ``candidates`` sampled ones, ranked by the checks at the end of the round."""

    max_attempts: int = 3
    candidates: int = 3  # k: candidates per attempt after the first
    model_checks: int = 4  # checks BRICK writes from the intent when the first attempt fails; 0: none
    resamples: int = 2  # new samples asked for when a candidate repeats one already tried
    max_restarts: int = 3
    limits: MethodLimits | None = None  # None: the receiver's, else the sandbox's defaults
    code_tokens: int = 700
    check_tokens: int = 200


class StaleCycle(Exception):
    """The cycle moved on under us (another runner, or a resume): stop driving."""


def open_cycle(root: Any, receiver: UvmObject, selector: str, args: list[Any], kwargs: dict[str, Any], intent: str | None) -> Learning:
    """Create the cycle for a message, or join the unfinished one for the same message.

    Runs inside the kernel's send transaction. ``active_cycles`` is keyed by
    the message (receiver OID and selector), so two identical messages racing
    here insert the same BTree key — a conflict BTrees cannot resolve — and the
    retry of the loser finds and joins the winner's cycle.
    """
    if "orchestrator" not in root:
        raise MessageNotUnderstood(receiver, selector)
    orchestrator = root["orchestrator"]
    key = f"{oid_hex(receiver)}:{selector}"
    existing = orchestrator.active_cycles.get(key)
    if existing is not None and CycleState(existing.state) not in TERMINAL:
        return Learning(existing.cycle_id)
    cycle_id = uuid.uuid4().hex[:12]
    now = time.time()
    cycle = UvmObject(
        parents=(root["cognitive_cycle"],),
        name=f"cycle {cycle_id}",
        description=f"learning {selector!r} for {name_of(receiver)}",
        cycle_id=cycle_id,
        key=key,
        target=receiver,
        selector=selector,
        args=tuple(args),
        kwargs=dict(kwargs),
        intent=intent or "",
        state=INITIAL.value,  # the image holds the plain string
        attempt=0,
        restarts=0,
        created_at=now,
        updated_at=now,
        history=PersistentList(),
        artifacts=PersistentList(),
        outcome=None,
    )
    orchestrator.active_cycles[key] = cycle
    orchestrator.cycles[cycle_id] = cycle
    return Learning(cycle_id)


# -- the engine ---------------------------------------------------------------------


def _enter(cycle: UvmObject, step: StepInput, to: CycleState, note: str, record: dict[str, Any] | None) -> None:
    """Inside a transaction: move *cycle* on from the state *step* was read in.

    The one place a cycle's state changes, so every move is checked against
    the transition table and recorded in the history the same way.
    """
    check_transition(step.state, to)
    if cycle.state != step.state:
        raise StaleCycle(f"cycle {step.cycle} is {cycle.state}, not {step.state}")
    now = time.time()
    if record is not None:
        cycle.artifacts.append({**record, "at": now})
    cycle.history.append({"from": step.state.value, "to": to.value, "at": now, "note": note})
    cycle.state = to.value
    cycle.updated_at = now


def _queries(step: StepInput) -> list[str]:
    """Search queries straight from the message: the selector's words and the intent.

    A planning call used to ask BRICK for queries: 22 s of a grammar-constrained
    JSON answer on this hardware, for queries no better than the intent itself,
    which retrieval embeds anyway."""
    queries = [" ".join(sorted(words(step.selector))), (step.intent or step.selector)[:500]]
    return [q for q in dict.fromkeys(queries) if q.strip()]


def _round_size(config: CycleConfig, attempt: int) -> int:
    return 1 if attempt == 0 else max(1, config.candidates)


def _strategy(step: StepInput) -> str:
    """"first" for the first candidate; "fresh" (no previous attempt shown) once the
    last two failures were of the same kind, since showing the model its mistake
    again has stopped helping; "feedback" otherwise."""
    if step.attempt == 0 and step.index == 0:
        return "first"
    if len(step.failures) >= 2 and step.failures[-1] == step.failures[-2]:
        return "fresh"
    return "feedback"


def _temperature(attempt: int, index: int, resample: int) -> float:
    """Near-greedy for the first candidate; warmer for each later one, and for each
    resample of a candidate that repeated an earlier one."""
    if attempt == 0 and index == 0 and resample == 0:
        return 0.1
    return min(1.2, 0.5 + 0.15 * index + 0.1 * attempt + 0.2 * resample)


def _seed(cycle: str, attempt: int, index: int, resample: int) -> int:
    """A seed of its own for every sample: a retry is a different sample by construction."""
    return int(digest(f"{cycle}:{attempt}:{index}:{resample}")[:8], 16)


def _shape_source(text: str, repaired: str | None, selector: str) -> str:
    """What a candidate's shape is computed from: the repaired method, the extracted one, or the text."""
    if repaired is not None:
        return repaired
    try:
        return extract_method(text, selector)[1]
    except Rejected:
        return text


def codet_scores(verdicts: list[Verdict]) -> dict[int, float]:
    """CodeT-style rank of an attempt's candidates that meet the intent's examples:
    (candidates whose outputs on the model's checks agree with this one's) x (1 + model checks it passes)."""
    eligible = [v for v in verdicts if v.passed_intent and v.trial is not None]

    def outputs(v: Verdict) -> tuple[str, ...]:
        return tuple(str(c.get("got")) for c in v.trial["checks"] if c.get("source") == "model")  # type: ignore[index]

    scores = {}
    for v in eligible:
        agreeing = sum(1 for other in eligible if outputs(other) == outputs(v))
        passed = sum(1 for c in v.trial["checks"] if c.get("source") == "model" and c.get("passed"))  # type: ignore[index]
        scores[v.index] = float(agreeing * (1 + passed))
    return scores


@dataclass
class _Running:
    done: threading.Event = field(default_factory=threading.Event)


class CycleEngine:
    """Drives cycles; thread-safe. One runner per cycle, other callers wait."""

    def __init__(
        self,
        db: DB,
        personas: Personas,
        *,
        config: CycleConfig = CycleConfig(),
        log: MetaLog | None = None,
        sandbox: MethodRuntime | None = None,
    ) -> None:
        install_hooks()  # an image driven by an engine learns what it does not understand
        self.db = db
        self.personas = personas  # HostedPersonas in the product; batos.testing.SharedPersonas in tests
        self.config = config
        self.log = log
        self.sandbox = sandbox  # None: the process's installed method runtime
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self.warmth = "cold"  # cold, warming, warm, or "failed: why" (see warm())
        # called with (cycle_id, outcome) when a cycle this engine drove ends: the slower loops listen
        self.finished_hooks: list[Callable[[str, dict[str, Any]], None]] = []
        # what each state that is not terminal does: its work, then its transition
        self._steps: dict[CycleState, Callable[[StepInput, Progress], None]] = {
            CycleState.IDLE: self._brief,
            CycleState.DECOMPOSING: self._decompose,
            CycleState.DELEGATING: self._delegate,
            CycleState.SYNTHESIZING: self._synthesize,
            CycleState.VALIDATING: self._validate,
        }

    @property
    def running(self) -> int:
        return len(self._running)

    def status(self) -> dict[str, Any]:
        """For the kernel's status: cycles being driven, warmth, models loaded, model calls."""
        return {"cycles_running": self.running, "warmth": self.warmth, **self.personas.status()}

    def warm(self) -> None:
        """Do now what the first cycle would otherwise wait for: load the embedding
        model (seconds) and BRICK's model, and evaluate BRICK's system prompt and the
        object protocol, the stable prefix every code prompt but a pasted function's
        starts with (about 30 s cold on 2 cores; the model host then reuses it; a
        pasted function's prompt shares the system prompt). Run at kernel start, in the
        background: a cycle that comes first waits on the host as it would anyway."""
        self.warmth = "warming"
        try:
            memory.Embedder.encode(["warm"])
            with reading(self.db) as root:
                pins = self.personas.pin(root)
                system = system_prompt(root, "BRICK")
            # avoid= too: the host finds the avoided tokens once, scanning its whole vocabulary (~1 s)
            self.personas.speaker("BRICK", pins).complete(system, OBJECT_PROTOCOL, max_tokens=1, temperature=0.0, avoid=CODE_AVOID)
        except Exception as exc:  # a model that cannot load fails the first cycle with the full story
            self.warmth = f"failed: {type(exc).__name__}: {exc}"[:300]
            log.warning("warming up failed: %s", self.warmth)
        else:
            self.warmth = "warm"

    def _record(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.record(event, **fields)

    # -- driving ----------------------------------------------------------------

    def drive(self, cycle_id: str, progress: Progress | None = None, gate: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run the cycle to a terminal state (or wait for whoever runs it); return its outcome.

        *gate* is called before every step: a self-generated goal's cycle waits
        there while the Architect's messages are being served.
        """
        with self._lock:
            running = self._running.get(cycle_id)
            owner = running is None
            if owner:
                running = self._running[cycle_id] = _Running()
        if not owner:
            if progress:
                progress("WAITING", f"joined cycle {cycle_id}, already running")
            running.done.wait()
            return self.outcome(cycle_id)
        try:
            while True:
                if gate is not None:
                    gate()
                step = self._read(cycle_id)
                if step.state in TERMINAL:
                    outcome = self.outcome(cycle_id)
                    self._announce(cycle_id, outcome)
                    return outcome
                try:
                    self._steps[step.state](step, progress or (lambda state, detail: None))
                except StaleCycle:
                    continue  # re-read and carry on from whatever state it is in now
                except Exception as exc:  # noqa: BLE001 - a broken step must end the cycle, not loop on resume
                    reason = f"model unavailable: {exc}" if isinstance(exc, ModelError) else f"internal error in {step.state}: {type(exc).__name__}: {exc}"
                    self._finish(step, CycleState.FAILED, reason)
                    if progress:
                        progress(CycleState.FAILED, reason)
        finally:
            with self._lock:
                del self._running[cycle_id]
            running.done.set()

    def _announce(self, cycle_id: str, outcome: dict[str, Any]) -> None:
        for hook in self.finished_hooks:
            try:
                hook(cycle_id, outcome)
            except Exception as exc:  # noqa: BLE001 - a listener's bug must not fail the Architect's message
                self._record("hook_failed", cycle=cycle_id, error=f"{type(exc).__name__}: {exc}")

    def outcome(self, cycle_id: str) -> dict[str, Any]:
        """The cycle's state, whether it learned the method (what the kernel asks), and its recorded outcome."""
        with reading(self.db) as root:
            cycle = root["orchestrator"].cycles[cycle_id]
            state = CycleState(cycle.state)
            return {"cycle": cycle_id, "state": state, "completed": state is CycleState.COMPLETE, "outcome": dict(cycle.outcome or {})}

    def resume_pending(self) -> list[str]:
        """After a restart: count the interruption of every unfinished cycle and go on."""
        with reading(self.db) as root:
            pending = [c.cycle_id for c in root["orchestrator"].active_cycles.values() if CycleState(c.state) not in TERMINAL]
        resumed = []
        for cycle_id in pending:
            def bump(root: Any, cycle_id: str = cycle_id) -> int:
                cycle = root["orchestrator"].cycles[cycle_id]
                cycle.restarts += 1
                return cycle.restarts

            restarts = transact(self.db, bump, note=f"cycle {cycle_id} resumed")
            self._record("resumed", cycle=cycle_id, restarts=restarts)
            if restarts > self.config.max_restarts:
                self._finish(self._read(cycle_id), CycleState.FAILED, f"interrupted {restarts} times; giving up")
            else:
                resumed.append(cycle_id)
                self.drive(cycle_id)
        return resumed

    def _read(self, cycle_id: str) -> StepInput:
        with reading(self.db) as root:
            return read_step(root, cycle_id)

    def _transition(self, step: StepInput, to: CycleState, note: str, artifact: Artifact | list[Artifact],
                    attempt: int | None = None, index: int | None = None) -> None:
        records = [a.to_record() for a in (artifact if isinstance(artifact, list) else [artifact])]

        def work(root: Any) -> None:
            cycle = root["orchestrator"].cycles[step.cycle]
            for record in records[:-1]:
                cycle.artifacts.append({**record, "at": time.time()})
            _enter(cycle, step, to, note, records[-1])
            if attempt is not None:
                cycle.attempt = attempt
            if index is not None:
                cycle.index = index

        transact(self.db, work, note=f"cycle {step.cycle}: {step.state} -> {to}")
        for record in records:
            self._record(
                "transition", cycle=step.cycle, src=step.state, dst=to, note=note, artifact=record["kind"], sha256=record["sha256"],
                duration_s=record.get("duration_s"), attempt=attempt if attempt is not None else step.attempt,
            )

    def _finish(self, step: StepInput, state: CycleState, reason: str, verdict: Verdict | None = None, source: str | None = None) -> None:
        """COMPLETE (install + outcome + skill index) or FAILED, in one transaction."""
        skill = None
        if source is not None:  # embed before the transaction: inference stays outside
            skill = memory.prepare_skill(f"skill:{step.target_ref}:{step.selector}", step.target_name,
                                         step.selector, step.intent, source)
        record = verdict.to_record() if verdict is not None else None

        def work(root: Any) -> None:
            orchestrator = root["orchestrator"]
            cycle = orchestrator.cycles[step.cycle]
            _enter(cycle, step, state, reason, record)
            if source is not None:
                installed = cycle.target.define_method(cycle.selector, source, author="BRICK", cycle=cycle.cycle_id)
                orchestrator.skills[cycle.key] = {
                    "owner": cycle.target, "selector": cycle.selector, "intent": cycle.intent,
                    "cycle": cycle.cycle_id, "version": installed.version,
                }
                memory.store(root["knowledge_catalog"], skill)
            dissonance = cycle_dissonance([dict(a) for a in cycle.artifacts], state)
            candidates = sum(1 for a in cycle.artifacts if a["kind"] == "candidate")
            cycle.outcome = {"state": state.value, "reason": reason, "attempts": cycle.attempt + 1, "candidates": candidates,
                             "dissonance": dissonance, "source": source}
            record_signal(orchestrator, dissonance, "cycle", cycle.cycle_id)
            del orchestrator.active_cycles[cycle.key]

        transact(self.db, work, note=f"cycle {step.cycle}: {step.state} -> {state}")
        self._record("finished", cycle=step.cycle, state=state, reason=reason, selector=step.selector, target=step.target_ref)

    # -- the states -------------------------------------------------------------

    def _brief(self, step: StepInput, progress: Progress) -> None:
        with reading(self.db) as root:
            pins = self.personas.pin(root)  # every later step speaks through these versions
        self._transition(step, CycleState.DECOMPOSING, "brief accepted", Brief(
            selector=step.selector, call=step.call, intent=step.intent, target=step.target_ref,
            sha256=digest(json.dumps([step.selector, step.call, step.intent])), pins=pins,
        ))
        progress(CycleState.DECOMPOSING, f"BABS takes search queries from the message {step.selector!r}")

    def _decompose(self, step: StepInput, progress: Progress) -> None:
        queries = _queries(step)
        text = json.dumps({"queries": queries})
        self._transition(step, CycleState.DELEGATING, f"{len(queries)} queries", Plan(
            persona="BABS", model="none", queries=queries, text=text, sha256=digest(text), duration_s=0.0,
        ))
        progress(CycleState.DELEGATING, "BABS searches memory: " + "; ".join(q[:60] for q in queries))

    def _delegate(self, step: StepInput, progress: Progress) -> None:
        started = time.monotonic()
        with reading(self.db) as root:
            target = root["orchestrator"].cycles[step.cycle].target
            snippets = retrieve(root, target, step.queries)
        found = ", ".join(s["selector"] for s in snippets) or "nothing related"
        self._transition(step, CycleState.SYNTHESIZING, f"{len(snippets)} snippets", Context(
            persona="BABS", snippets=snippets, sha256=digest(json.dumps(snippets, sort_keys=True, default=repr)),
            duration_s=time.monotonic() - started,
        ))
        progress(CycleState.SYNTHESIZING, f"found {found}; BRICK writes candidate 1")

    def _write_checks(self, step: StepInput, progress: Progress) -> Checks:
        """BRICK's own checks, from the intent alone (no candidate in the prompt)."""
        started = time.monotonic()
        brick = self.personas.speaker("BRICK", step.pins)
        examples = checks_from_intent(step.intent)
        params = ", ".join(["self", *(f"arg{i}" for i in range(len(step.args))), *step.kwargs])
        progress(CycleState.SYNTHESIZING, "BRICK writes checks from the intent")
        text = brick.complete(step.system, checks_prompt(step.selector, f"{step.selector}({params})", step.intent, examples,
                                                         self.config.model_checks),
                              max_tokens=self.config.check_tokens, temperature=0.2, stop=CHECK_STOPS,
                              seed=_seed(step.cycle, step.attempt, -1, 0))
        parsed = parse_checks(text, step.selector, examples, self.config.model_checks, len(step.args))
        rows = [{"text": c.text, "args": list(c.args), "kwargs": dict(c.kwargs), "expected": c.expected, "source": "model", "dropped": None}
                for c in parsed.kept]
        rows += [{"text": line, "source": "model", "dropped": why} for line, why in parsed.dropped]
        return Checks(persona="BRICK", model=brick.name, text=text, checks=rows, sha256=digest(text),
                      duration_s=time.monotonic() - started)

    def _synthesize(self, step: StepInput, progress: Progress) -> None:
        records: list[Artifact] = []
        # checks of the form f(args) == value say nothing about a method whose answer depends on
        # the state earlier messages left, and cost a model call: not for those
        if step.attempt > 0 and step.checks is None and self.config.model_checks > 0 and not step.stateful:
            records.append(self._write_checks(step, progress))
        brick = self.personas.speaker("BRICK", step.pins)
        strategy = _strategy(step)
        pasted = pasted_function(step.intent, step.selector)
        ask = spec_prompt if pasted else code_prompt
        prompt = ask(step, strategy)
        framing = "pasted function" if pasted else "protocol"
        label = f"{step.attempt + 1}.{step.index + 1}"
        for resample in range(self.config.resamples + 1):
            if resample == 1 and strategy == "feedback":  # it copied the rejected code it was shown: show only why
                strategy = "problems"
                prompt = ask(step, strategy)
            started = time.monotonic()
            temperature = _temperature(step.attempt, step.index, resample)
            seed = _seed(step.cycle, step.attempt, step.index, resample)
            text = brick.complete(step.system, prompt, max_tokens=self.config.code_tokens, temperature=temperature, seed=seed,
                                  stop=CODE_STOPS, avoid=CODE_AVOID, on_token=lambda piece: progress(WRITING, piece))
            fixed = repair(text, step.selector, step.receiver["methods"].keys(), step.intent, step.receiver["slots"].keys())
            shape = digest(normalised(_shape_source(text, fixed.source, step.selector)))
            duplicate = step.shapes.get(shape)
            records.append(Candidate(
                persona="BRICK", model=brick.name, attempt=step.attempt, text=text, sha256=digest(text),
                duration_s=time.monotonic() - started, index=step.index, strategy=strategy, framing=framing, temperature=temperature, seed=seed,
                repairs=fixed.repairs, source=fixed.source, shape=shape, duplicate_of=duplicate,
            ))
            if duplicate is None:
                break
            progress(CycleState.SYNTHESIZING, f"candidate {label} repeats candidate {duplicate}; sampling again, warmer")
        repaired = f" ({'; '.join(fixed.repairs)})" if fixed.repairs else ""
        self._transition(step, CycleState.VALIDATING, f"candidate {label}", records)
        progress(CycleState.VALIDATING, f"the guardian audits candidate {label}{repaired}, then a trial run")

    def _checks(self, step: StepInput) -> list[Check]:
        """The Architect's examples (decisive), then BRICK's checks (they only rank)."""
        checks = checks_from_intent(step.intent)
        if step.checks is not None:
            checks += [Check(c["text"], tuple(c["args"]), dict(c["kwargs"]), c["expected"], source="model")
                       for c in step.checks.checks if c.get("dropped") is None]
        return checks

    def _validate(self, step: StepInput, progress: Progress) -> None:
        candidate = step.candidate
        assert candidate is not None, "VALIDATING without a candidate"
        attempt, index = step.attempt, step.index
        label = f"{attempt + 1}.{index + 1}"
        checks = self._checks(step)
        trial: TrialResult | None = None
        if candidate.duplicate_of is not None:
            report = audit(candidate.source or candidate.text, step.selector)
            errors, source, failure = [], report.source, "duplicate"
            feedback = f"it is the same method as candidate {candidate.duplicate_of}, which was already rejected"
        else:
            report = audit(candidate.source or candidate.text, step.selector)
            errors, source = report.errors, report.source
            if report.accepted:
                with reading(self.db) as root:
                    cycle = root["orchestrator"].cycles[step.cycle]
                    trial = run_trial(self.sandbox or installed(), cycle.target, step.selector, report.source,
                                      list(cycle.args), dict(cycle.kwargs), checks, self.config.limits,
                                      refusal_expected=refusal_anticipated(step.intent))
                self._record("trial", cycle=step.cycle, attempt=attempt, index=index, **trial.as_dict())
            self._record("audit", cycle=step.cycle, attempt=attempt, index=index, accepted=report.accepted, errors=report.errors)
            feedback = report.feedback() if not report.accepted else (trial.feedback(report.source) if trial and not trial.passed_intent else "")
            failure = "audit" if not report.accepted else (trial.failure_kind() if trial else "")
        passed_intent = bool(trial and trial.passed_intent and candidate.duplicate_of is None)
        verdict = Verdict(
            attempt=attempt, accepted=report.accepted and candidate.duplicate_of is None, audit_errors=errors,
            trial=trial.as_dict() if trial else None, checks=[c.text for c in checks], source=source, feedback=feedback,
            sha256=digest(source or ""), index=index, failure="" if passed_intent else (failure or "wrong result"),
            passed_intent=passed_intent,
        )
        round_done = index + 1 >= _round_size(self.config, attempt)
        if passed_intent and trial is not None and (trial.passed or attempt == 0):
            # every check met (the model's too), or the fast path: the first candidate meets the Architect's examples
            verdict = replace(verdict, chosen=True)
            refused = f" (it refuses this message, as the intent allows: {trial.refused})" if trial.refused else ""
            self._finish(step, CycleState.COMPLETE, f"installed {step.selector}: candidate {label}{refused}", verdict, source)
            progress(CycleState.COMPLETE, f"{step.selector} installed on {step.target_name}")
            return
        if not round_done:
            self._transition(step, CycleState.SYNTHESIZING, f"candidate {label} not chosen yet; next candidate", verdict, index=index + 1)
            progress(CycleState.SYNTHESIZING, f"candidate {label}: {_headline(feedback, trial)}; BRICK writes candidate {attempt + 1}.{index + 2}")
            return
        scores = codet_scores([*step.verdicts, verdict])
        if scores:
            best = max(scores, key=lambda i: (scores[i], -i))
            chosen = next((v for v in step.verdicts if v.index == best), verdict)
            verdict = replace(verdict, score=scores.get(index), chosen=best == index)
            reason = f"installed {step.selector}: candidate {attempt + 1}.{best + 1}, ranked first of {len(scores)} by the checks (score {scores[best]:g})"
            self._finish(step, CycleState.COMPLETE, reason, verdict, chosen.source)
            progress(CycleState.COMPLETE, f"{step.selector} installed on {step.target_name}")
        elif attempt + 1 >= self.config.max_attempts:
            self._finish(step, CycleState.FAILED, f"no acceptable method after {attempt + 1} attempts; last problems: {feedback}", verdict)
            progress(CycleState.FAILED, feedback.splitlines()[0] if feedback else "rejected")
        else:
            self._transition(step, CycleState.SYNTHESIZING, "rejected; retry with feedback", verdict, attempt=attempt + 1, index=0)
            progress(CycleState.SYNTHESIZING, f"candidate {label} rejected ({_headline(feedback, trial)}); attempt {attempt + 2}")


def _headline(feedback: str, trial: TrialResult | None) -> str:
    if feedback:
        return feedback.splitlines()[0][:160]
    if trial is not None and not trial.passed:
        return "a check of BRICK's own failed"
    return "rejected"
