"""The cognitive cycle, driven through the kernel core with a scripted model."""

from __future__ import annotations

import re
import threading

import pytest

from batos.cognition import states
from batos.cognition.artifacts import Brief, Candidate, Context, Plan, Verdict, digest
from batos.cognition.cycle import CycleConfig, CycleEngine
from batos.cognition.states import TERMINAL, TRANSITIONS, CycleState, IllegalTransition, check_transition
from batos.kernel.core import Kernel
from batos.testing import ScriptedModel, SharedPersonas
from batos.core.metalog import MetaLog, read_events
from batos.sandbox.runtime import MethodLimits
from batos.core.txn import reading, transact
from batos.wire.protocol import PROTOCOL_VERSION, Error, Result, Send

GOOD = "Here you go:\n```python\nimport math\n\ndef factorial(self, n):\n    return math.factorial(n)\n```\n"
WRONG = "```python\ndef factorial(self, n):\n    return n * 2\n```"
UNSAFE = "```python\nimport os\n\ndef factorial(self, n):\n    return os.getpid()\n```"
ESCAPE = "```python\ndef factorial(self, n):\n    return ().__class__.__base__.__subclasses__()\n```"
ENDLESS = "```python\ndef factorial(self, n):\n    while True:\n        n += 1\n```"
BOMB = "```python\ndef factorial(self, n):\n    return len('x' * (10 ** 11))\n```"
PROSE = "I cannot write that method, sorry."
INTENT = "return n factorial, e.g. factorial(4) == 24"


def make_kernel(image, script, tmp_path=None, **config):
    """One candidate per attempt and no checks of the model's own unless a test asks:
    each scripted answer is then exactly one candidate."""
    config = {"candidates": 1, "model_checks": 0, **config}
    model = ScriptedModel(script)
    log = MetaLog(tmp_path / "metacognition.jsonl") if tmp_path else None
    limits = MethodLimits(cpu_seconds=2, memory_bytes=256 << 20, wall_seconds=4)
    engine = CycleEngine(image.db, SharedPersonas(model), config=CycleConfig(limits=limits, **config), log=log)
    return Kernel(image, engine=engine), model, log


def send(kernel, selector, *args, target="genesis", intent=INTENT, progress=None):
    request = Send(v=PROTOCOL_VERSION, id="r", kind="send", target=target, selector=selector, args=list(args), intent=intent)
    return kernel.send(request, progress)


def cycles(image):
    with reading(image.db) as root:
        return {cid: (c.state, c.attempt, [h["to"] for h in c.history]) for cid, c in root["orchestrator"].cycles.items()}


def test_an_unknown_message_is_learned_installed_and_answered(image, tmp_path):
    kernel, model, log = make_kernel(image, [GOOD], tmp_path)
    states, written = [], []
    reply = send(kernel, "factorial", 5, progress=lambda state, detail: written.append(detail) if state == "WRITING" else states.append(state))
    assert reply == Result(id="r", value=120)
    assert states == ["LEARNING", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "VALIDATING", "COMPLETE"]
    # the candidate streams to the Architect as it is written, cut at the closing fence
    assert "".join(written) == GOOD[: GOOD.rindex("\n```")]
    [(cycle_id, (state, attempt, path))] = cycles(image).items()
    assert (state, attempt) == ("COMPLETE", 0)
    assert path == ["DECOMPOSING", "DELEGATING", "SYNTHESIZING", "VALIDATING", "COMPLETE"]
    with reading(image.db) as root:
        record = root["genesis"].method_record("factorial")
        assert (record.author, record.cycle, record.version) == ("BRICK", cycle_id, 1)
        assert record.source == "import math\n\ndef factorial(self, n):\n    return math.factorial(n)\n"
        cycle = root["orchestrator"].cycles[cycle_id]
        kinds = [a["kind"] for a in cycle.artifacts]
        assert kinds == ["brief", "plan", "context", "candidate", "verdict"]
        verdict = cycle.artifacts[-1]
        assert verdict["trial"]["value"] == "120"
        assert verdict["checks"] == ["factorial(4) == 24"]
        assert verdict["trial"]["checks"][0]["passed"] is True
        assert cycle.artifacts[1]["persona"] == "BABS" and cycle.artifacts[1]["model"] == "none"  # no planning call
        assert cycle.artifacts[1]["queries"] == ["factorial", INTENT]
        assert cycle.artifacts[3]["model"] == "scripted" and cycle.artifacts[3]["repairs"] == []
        assert len(root["orchestrator"].active_cycles) == 0
        assert root["orchestrator"].skills[cycle.key]["selector"] == "factorial"
    # The same message again: answered directly, no model call.
    assert send(kernel, "factorial", 6).value == 720
    assert model.calls == 1
    log.close()
    events = list(read_events(tmp_path / "metacognition.jsonl", cycle=cycle_id))
    assert [e["event"] for e in events].count("transition") == 4
    assert {"audit", "trial", "finished"} <= {e["event"] for e in events}
    assert all(e.get("sha256") for e in events if e["event"] == "transition")


def test_rejected_attempts_feed_back_into_the_next(image):
    kernel, model, _ = make_kernel(image, [UNSAFE, WRONG, GOOD])
    assert send(kernel, "factorial", 5).value == 120
    [(_, (state, attempt, path))] = cycles(image).items()
    assert (state, attempt) == ("COMPLETE", 2)
    assert path.count("SYNTHESIZING") == 3
    second_prompt, third_prompt = model.prompts[1][1], model.prompts[2][1]
    assert "import of 'os' is not allowed" in second_prompt
    assert "Example factorial(4) should return 24, but it returned 8" in third_prompt


@pytest.mark.parametrize("bad", [ESCAPE, ENDLESS, BOMB, PROSE, UNSAFE])
def test_a_failed_cycle_leaves_the_target_exactly_as_it_was(image, bad):
    def serials(root):  # the target's one record holds its slots and its method table
        genesis = root["genesis"]
        genesis._p_activate()
        return genesis._p_serial

    with reading(image.db) as root:
        before = serials(root)
    kernel, model, _ = make_kernel(image, lambda system, prompt: bad)
    reply = send(kernel, "factorial", 5)
    assert isinstance(reply, Error) and reply.code == "cycle_failed"
    assert "no acceptable method after 3 attempts" in reply.message
    with reading(image.db) as root:
        assert serials(root) == before
        assert root["genesis"].method_names() == []
    [(_, (state, attempt, _path))] = cycles(image).items()
    assert (state, attempt) == ("FAILED", 2)


def test_feedback_names_what_went_wrong(image):
    kernel, model, _ = make_kernel(image, [ENDLESS, BOMB, ESCAPE], max_attempts=3)
    send(kernel, "factorial", 5)
    prompts = [p for _, p in model.prompts]
    assert "Calling factorial(5) failed: " in prompts[1] and ("CPU limit" in prompts[1] or "wall-clock limit" in prompts[1])
    assert "MemoryError" in prompts[2] or "killed" in prompts[2]


def test_a_method_that_changes_the_receiver_persists(image):
    code = (
        "```python\ndef remember(self, item):\n    notes = list(self.notes) if 'notes' in self.slot_names() else []\n"
        "    notes.append(item)\n    self.notes = notes\n    self._p_changed = True\n    return len(notes)\n```"
    )
    kernel, _, _ = make_kernel(image, [code])
    assert send(kernel, "remember", "milk", intent="store an item in the notes list").value == 1
    assert send(kernel, "remember", "eggs").value == 2
    with reading(image.db) as root:
        assert root["genesis"].notes == ["milk", "eggs"]


def test_two_identical_messages_share_one_cycle(image):
    kernel, model, _ = make_kernel(image, [{"text": GOOD, "delay": 0.5}])
    replies = []

    def go():
        replies.append(send(kernel, "factorial", 5))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [Result(id="r", value=120)] * 2
    assert len(cycles(image)) == 1
    assert model.calls == 1


def test_a_model_failure_fails_the_cycle_cleanly(image):
    kernel, model, _ = make_kernel(image, [])  # nothing scripted for the code step
    reply = send(kernel, "factorial", 5)
    assert isinstance(reply, Error) and reply.code == "cycle_failed"
    assert "model unavailable" in reply.message


def test_an_interrupted_cycle_resumes_from_its_last_state(image):
    class Crash(BaseException):
        """Stands in for the process dying between two transitions."""

    def crashing(system, prompt):
        raise Crash()

    kernel, _, _ = make_kernel(image, crashing)
    with pytest.raises(Crash):
        send(kernel, "factorial", 5)
    [(cycle_id, (state, _, _))] = cycles(image).items()
    assert state == "SYNTHESIZING"
    # A new kernel on the same image: the cycle is picked up where it stopped.
    model = ScriptedModel([GOOD])
    engine = CycleEngine(image.db, SharedPersonas(model))
    assert engine.resume_pending() == [cycle_id]
    assert cycles(image)[cycle_id][0] == "COMPLETE"
    assert model.calls == 1  # only the candidate: the steps before it were already committed
    assert Kernel(image, engine=engine).send(Send(v=1, id="x", kind="send", target="genesis", selector="factorial", args=[4])).value == 24


def test_a_cycle_interrupted_too_often_is_failed(image):
    kernel, _, _ = make_kernel(image, [])
    engine = CycleEngine(image.db, SharedPersonas(ScriptedModel([])), config=CycleConfig(max_restarts=0))

    def stall(root):
        from batos.cognition.cycle import open_cycle

        open_cycle(root, root["genesis"], "factorial", [5], {}, INTENT)

    transact(image.db, stall)
    assert engine.resume_pending() == []
    [(_, (state, _, path))] = cycles(image).items()
    assert state == "FAILED" and path == ["FAILED"]


# -- the state machine ----------------------------------------------------------------


def test_the_transition_table_is_the_documented_diagram():
    """Each diagram line ``A, B -> C -> D`` is the edges A->C, B->C and C->D; nothing else is allowed."""
    documented = set()
    for line in states.__doc__.splitlines():
        if "->" in line:
            stages = [re.findall(r"\b[A-Z]+\b", part) for part in line.split("->")]
            documented |= {(src, dst) for before, after in zip(stages, stages[1:]) for src in before for dst in after}
    table = {(src, dst) for src, successors in TRANSITIONS.items() for dst in successors}
    assert documented == table
    assert set(TRANSITIONS) == set(CycleState)
    assert TERMINAL == {CycleState.COMPLETE, CycleState.FAILED}


def test_an_illegal_transition_is_refused_with_a_clear_error():
    check_transition(CycleState.VALIDATING, CycleState.SYNTHESIZING)
    with pytest.raises(IllegalTransition, match="illegal cycle transition IDLE -> COMPLETE: IDLE may only go to DECOMPOSING, FAILED"):
        check_transition(CycleState.IDLE, CycleState.COMPLETE)
    with pytest.raises(IllegalTransition, match="FAILED may only go to nothing"):
        check_transition(CycleState.FAILED, CycleState.IDLE)


def test_the_engine_checks_every_transition_against_the_table(image):
    kernel, model, _ = make_kernel(image, [GOOD])
    engine = kernel.engine

    def skip_ahead(step, progress):  # a broken engine step that jumps straight to COMPLETE
        engine._transition(step, CycleState.COMPLETE, "skipping the work", Brief(step.selector, step.call, step.intent, step.target_ref, "x"))

    engine._steps[CycleState.IDLE] = skip_ahead
    reply = send(kernel, "factorial", 5)
    assert isinstance(reply, Error) and reply.code == "cycle_failed"
    assert "internal error in IDLE: IllegalTransition: illegal cycle transition IDLE -> COMPLETE" in reply.message
    [(_, (state, _, path))] = cycles(image).items()
    assert state == "FAILED" and path == ["FAILED"]
    assert model.calls == 0


def test_the_image_keeps_states_and_artifacts_as_plain_data(image):
    """Stored states are plain strings and artifacts plain dicts (no reference to the classes), and every
    stored record reads back into its dataclass and writes out the very same keys and values."""
    kernel, _, _ = make_kernel(image, [WRONG, GOOD])
    assert send(kernel, "factorial", 5).value == 120
    with reading(image.db) as root:
        [cycle] = root["orchestrator"].cycles.values()
        assert type(cycle.state) is str and type(cycle.outcome["state"]) is str
        assert all(type(h["from"]) is str and type(h["to"]) is str for h in cycle.history)
        records = [dict(a) for a in cycle.artifacts]
    classes = {cls.kind: cls for cls in (Brief, Plan, Context, Candidate, Verdict)}
    assert [r["kind"] for r in records] == ["brief", "plan", "context", "candidate", "verdict", "candidate", "verdict"]
    for record in records:
        assert type(record) is dict and list(record)[-1] == "at"
        assert classes[record["kind"]].from_record(record).to_record() == {k: v for k, v in record.items() if k != "at"}


def test_a_brief_from_before_personas_were_pinned_still_reads():
    record = {"kind": "brief", "selector": "f", "call": "", "intent": "", "target": "0x01", "sha256": digest("f"), "at": 1.0}
    assert Brief.from_record(record).pins is None
