"""The cognitive cycle, driven through the kernel core with a scripted model."""

from __future__ import annotations

import re
import threading

import pytest

from batos.cognition import states
from batos.cognition.artifacts import Brief, Candidate, Context, Plan, Verdict, digest
from batos.cognition.cycle import CycleConfig, CycleEngine
from batos.cognition.prompts import OBJECT_PROTOCOL, pasted_function
from batos.cognition.states import TERMINAL, TRANSITIONS, CycleState, IllegalTransition, check_transition
from batos.kernel.core import Kernel
from batos.testing import ScriptedModel, SharedPersonas
from batos.core.metalog import MetaLog, read_events
from batos.sandbox.runtime import MethodLimits
from batos.core.txn import reading, transact
from batos.substrate.llm import ModelError
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


# -- learning better: repairs, diversity, checks, state ---------------------------------


def artifacts(image, kind=None):
    with reading(image.db) as root:
        [cycle] = root["orchestrator"].cycles.values()
        return [dict(a) for a in cycle.artifacts if kind is None or a["kind"] == kind]


PASTED = '''def factorial(n):
    """Return n!.

    >>> factorial(4)
    24
    """
    if n <= 1:
        return 1
    return n * factorial(n - 1)
'''


def test_a_pasted_function_without_self_is_repaired_not_rejected(image):
    """Regression: "no def factorial(self, ...) found" threw away correct code written as a plain function."""
    kernel, model, _ = make_kernel(image, [f"```python\n{PASTED}```"])
    assert send(kernel, "factorial", 5, intent=PASTED).value == 120
    [candidate] = artifacts(image, "candidate")
    assert candidate["repairs"] == ["added self as the first parameter", "calls to factorial(...) now go to self.factorial(...)"]
    with reading(image.db) as root:
        assert "return n * self.factorial(n - 1)" in root["genesis"].method_record("factorial").source
    assert model.calls == 1


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        (PASTED, True),
        ("def factorial():\n    return 1\n", True),
        ("Please write this:\n\n    def factorial(n, *, memo=None):\n        ...", True),
        ("def factorial(self, n):\n    return n\n", False),  # a method, written for an object: the protocol applies
        ("def fact(n):\n    return n\n", False),  # another name
        ("return n factorial; def factorial(n) is the usual way", False),  # prose mentioning a def
        (None, False),
    ],
)
def test_a_pasted_function_is_recognised_by_its_def_without_self(intent, expected):
    assert pasted_function(intent, "factorial") is expected


def test_a_pasted_function_is_asked_for_as_itself_not_wrapped_in_the_object_protocol(image):
    """Measured on the bench's 33 specifications: wrapped in the protocol, 14 first candidates met
    their examples; asked for as the function alone, 23."""
    kernel, model, _ = make_kernel(image, [WRONG, GOOD])
    assert send(kernel, "factorial", 5, intent=PASTED).value == 120
    first, second = (p for _, p in model.prompts)
    assert first == f"Complete this Python function:\n\n{PASTED.strip()}\n\nAnswer with the code only."
    assert OBJECT_PROTOCOL not in second and second.startswith(first.removesuffix("Answer with the code only."))
    assert "Your previous attempt was rejected:\n```python\ndef factorial(self, n):\n    return n * 2\n```" in second
    assert "Example factorial(4) should return 24, but it returned 8" in second
    assert [c["framing"] for c in artifacts(image, "candidate")] == ["pasted function", "pasted function"]
    send(kernel, "double", 5)  # an intent in words keeps the protocol
    assert model.prompts[-1][1].startswith(OBJECT_PROTOCOL)


def test_a_repeated_candidate_is_never_trialled_again(image):
    """Regression: attempts 2 and 3 were byte-identical to attempt 1 whatever the feedback."""
    same_again = WRONG.replace("n * 2", "(n*2)  # same thing")
    kernel, model, _ = make_kernel(image, [WRONG, WRONG, same_again, GOOD])
    assert send(kernel, "factorial", 5).value == 120
    candidates = artifacts(image, "candidate")
    assert [(c["attempt"], c["duplicate_of"]) for c in candidates] == [(0, None), (1, "1.1"), (1, "1.1"), (1, None)]
    assert [c["temperature"] for c in candidates] == [0.1, 0.6, 0.8, 1.0]
    assert [c["strategy"] for c in candidates] == ["first", "feedback", "problems", "problems"]
    prompts = [p for _, p in model.prompts]
    assert "return n * 2" in prompts[1] and "return n * 2" not in prompts[2]  # a repeat is not shown its code again
    assert "Its problems:\nExample factorial(4) should return 24, but it returned 8" in prompts[2]
    assert len({c["seed"] for c in candidates}) == 4
    assert [r["seed"] for r in model.requests] == [c["seed"] for c in candidates]
    trialled = [c for c in candidates if c["duplicate_of"] is None]
    assert len({c["shape"] for c in trialled}) == len(trialled)
    assert [v["failure"] for v in artifacts(image, "verdict")] == ["wrong result", ""]  # repeats were never trialled


def test_an_attempt_of_nothing_but_repeats_is_rejected_without_a_trial(image):
    kernel, model, _ = make_kernel(image, lambda system, prompt: WRONG)
    reply = send(kernel, "factorial", 5)
    assert isinstance(reply, Error) and reply.code == "cycle_failed"
    verdicts = artifacts(image, "verdict")
    assert [v["failure"] for v in verdicts] == ["wrong result", "duplicate", "duplicate"]
    assert [v["trial"] for v in verdicts[1:]] == [None, None]
    assert model.calls == 1 + 3 + 3  # each later attempt: the candidate and its two resamples


def test_the_same_failure_twice_switches_to_a_fresh_prompt(image):
    missing = "```python\ndef factorial(self, n):\n    return self.table[n]\n```"
    missing2 = "```python\ndef factorial(self, n):\n    return self.cache[n] * 1\n```"
    kernel, model, _ = make_kernel(image, [missing, missing2, GOOD])
    assert send(kernel, "factorial", 5).value == 120
    strategies = [c["strategy"] for c in artifacts(image, "candidate")]
    assert strategies == ["first", "feedback", "fresh"]
    prompts = [p for _, p in model.prompts]
    assert "Your previous attempt was rejected" in prompts[1] and "return self.table[n]" in prompts[1]
    assert "Your previous attempt was rejected" not in prompts[2]
    assert "Calling factorial(5) failed: AttributeError" in prompts[1] and "at `return self.table[n]`" in prompts[1]


FACTORIAL_CHECKS = ("```python\nassert factorial(0) == 1\nassert factorial(5) == 120\nassert factorial(4) == 25\nassert factorial(3) == 7\n"
                    "assert fib(3) == 2\nassert factorial(3, 1) == 6\n```")
ONLY_FOUR = "```python\ndef factorial(self, n):\n    return 24 if n == 4 else 0\n```"
LOOPED = "```python\ndef factorial(self, n):\n    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out\n```"


def test_candidates_are_ranked_by_the_models_own_checks_and_their_agreement(image):
    def script(system, prompt):
        if "test lines" in prompt:
            return FACTORIAL_CHECKS
        script.calls += 1
        return [WRONG, ONLY_FOUR, GOOD, LOOPED][script.calls - 1]
    script.calls = 0

    kernel, model, _ = make_kernel(image, script, candidates=3, model_checks=4)
    assert send(kernel, "factorial", 5).value == 120
    [checks] = artifacts(image, "checks")
    kept = [(c["args"], c["expected"]) for c in checks["checks"] if c["dropped"] is None]
    assert kept == [([0], 1), ([5], 120), ([3], 7)]  # a wrong check survives: it only ranks
    dropped = {c["text"]: c["dropped"] for c in checks["checks"] if c["dropped"]}
    assert dropped == {"assert factorial(4) == 25": "contradicts the intent's example factorial(4) == 24", "assert fib(3) == 2": "calls fib, not factorial",
                       "assert factorial(3, 1) == 6": "passes 2 argument(s); the method is called with 1"}
    verdicts = artifacts(image, "verdict")
    assert [(v["index"], v["passed_intent"]) for v in verdicts] == [(0, False), (0, True), (1, True), (2, True)]
    assert verdicts[-1]["score"] == 6.0 and verdicts[-1]["chosen"] is False  # LOOPED agrees with GOOD: 2 x (1 + 2)
    with reading(image.db) as root:
        cycle = next(iter(root["orchestrator"].cycles.values()))
        assert cycle.outcome["reason"] == "installed factorial: candidate 2.2, ranked first of 3 by the checks (score 6)"
        assert root["genesis"].method_record("factorial").source == "import math\n\ndef factorial(self, n):\n    return math.factorial(n)\n"
    assert "factorial(4) == 24" in model.prompts[1][1] and "def factorial(self, n)" not in model.prompts[1][1].split("Tests already")[0]


RESETS = "```python\ndef add_todo(self, item):\n    self.todos = [item]\n    return self.todos\n```"
EMPTIES = "```python\ndef add_todo(self, item):\n    self.todos = []\n    self.todos.append(item)\n    self._p_changed = True\n    return self.todos\n```"
KEEPS = ("```python\ndef add_todo(self, item):\n    if not hasattr(self, 'todos'):\n        self.todos = []\n    self.todos.append(item)\n"
         "    self._p_changed = True\n    return self.todos\n```")
TODO_INTENT = "add an item to a todo list this object keeps, return the whole list: add_todo('a') returns ['a'], then add_todo('b') returns ['a', 'b']"


def test_a_method_that_keeps_state_is_tried_on_carried_state_and_leaves_the_image_alone(image):
    kernel, model, _ = make_kernel(image, [RESETS, KEEPS])
    assert send(kernel, "add_todo", "milk", intent=TODO_INTENT).value == ["milk"]  # the trial's items were rolled back
    assert send(kernel, "add_todo", "eggs").value == ["milk", "eggs"]
    first, second = artifacts(image, "verdict")
    assert first["trial"]["stateful"] is True
    assert [c["passed"] for c in first["trial"]["checks"]] == [True, False]
    assert "Example add_todo('b') should return ['a', 'b'], but it returned ['b']" in model.prompts[1][1]
    assert second["passed_intent"] is True


def test_a_slot_emptied_on_every_call_is_repaired_before_the_trial(image):
    """Regression (bench word_counter): the reset cost a model call where the examples caught it, and
    where none did (a tally whose calls each return a count) it was installed and lost every earlier call's words."""
    kernel, model, _ = make_kernel(image, [EMPTIES])
    assert send(kernel, "add_todo", "milk", intent=TODO_INTENT).value == ["milk"]
    assert send(kernel, "add_todo", "eggs").value == ["milk", "eggs"]
    [candidate] = artifacts(image, "candidate")
    assert candidate["repairs"] == ["`self.todos = []` ran on every call and threw away what earlier calls kept: it now runs only when the slot is missing"]
    assert model.calls == 1


def test_a_slot_added_to_but_never_created_is_created_before_the_trial(image):
    """Regression (bench shopping_cart): AttributeError on a slot the object never had, then the same method three times."""
    cart = ("```python\ndef add_to_cart(self, item, qty):\n    if item in self.entries:\n        self.entries[item] += qty\n"
            "    else:\n        self.entries[item] = qty\n    self._p_changed = True\n    return self.entries[item]\n```")
    kernel, model, _ = make_kernel(image, [cart])
    intent = "add qty units of the item to a cart this object keeps and return the units of that item"
    assert send(kernel, "add_to_cart", "apple", 3, intent=intent).value == 3
    assert send(kernel, "add_to_cart", "apple", 2).value == 5
    [candidate] = artifacts(image, "candidate")
    assert candidate["repairs"] == ["slot entries is added to but was never created: it is now created on first use, as {}"]
    assert model.calls == 1


def test_a_method_that_fails_on_its_second_call_is_rejected(image):
    once = "```python\ndef tally(self, n):\n    if hasattr(self, 'total'):\n        self.total = self.total + str(n)\n    else:\n        self.total = n\n    return n\n```"
    kernel, model, _ = make_kernel(image, [once, "```python\ndef tally(self, n):\n    self.total = getattr(self, 'total', 0) + n\n    return self.total\n```"])
    assert send(kernel, "tally", 2, intent="add n to a running total this object keeps and return the total").value == 2
    first = artifacts(image, "verdict")[0]
    assert first["trial"]["second_error"].startswith("TypeError: unsupported operand type(s) for +: 'int' and 'str' (line 3 of tally)")
    assert "a second time, on the state the first call left, failed: TypeError" in model.prompts[1][1]


def test_the_prompt_shows_slots_with_types_and_methods_with_signatures(image):
    def setup(root):
        root["genesis"].todos = ["buy milk", "call mum"]
        root["genesis"].define_method("count_todos", 'def count_todos(self):\n    """How many todos there are."""\n    return len(self.todos)\n')
    transact(image.db, setup)
    kernel, model, _ = make_kernel(image, [GOOD])
    send(kernel, "factorial", 5)
    prompt = model.prompts[0][1]
    assert "  todos: list of 2: ['buy milk', 'call mum']" in prompt
    assert "description:" not in prompt and "  name:" not in prompt  # every object's bookkeeping, not its state
    assert "  self.count_todos(self) -- How many todos there are." in prompt
    assert 'if not hasattr(self, "entries"):' in prompt  # the first-use idiom the guardian accepts
    assert model.requests[0]["stop"][0] == "\n```\n"
    assert model.requests[0]["avoid"] == ['"""', "'''"]  # no docstring copied from a pasted specification


def test_a_doctest_with_brackets_inside_its_strings_is_a_check():
    """Regression: the call pattern took the ')' in ``balanced('(]')`` for the end of the call and lost the example."""
    from batos.sandbox.trial import checks_from_intent

    intent = "def balanced(text):\n    '''\n    >>> balanced('(]')\n    False\n    >>> obj.balanced(text='([])')\n    True\n    '''\n"
    assert [(c.args, c.kwargs, c.expected) for c in checks_from_intent(intent)] == [(("(]",), {}, False), ((), {"text": "([])"}, True)]


def test_a_second_call_refused_on_purpose_is_not_a_failure(image):
    """Regression (found by the stateful bench): removing an item twice must raise, and the
    trial's second call took that deliberate ValueError for a broken method."""
    finish = ("```python\ndef finish(self, item):\n    if not hasattr(self, 'todos') or item not in self.todos:\n"
              "        raise ValueError('not on the list')\n    self.todos.remove(item)\n    self._p_changed = True\n    return self.todos\n```")

    def setup(root):
        root["genesis"].todos = ["milk", "eggs"]
    transact(image.db, setup)
    kernel, model, _ = make_kernel(image, [finish])
    assert send(kernel, "finish", "milk", intent="remove the item from the todo list; an error if it is not there").value == ["eggs"]
    [verdict] = artifacts(image, "verdict")
    assert verdict["trial"]["stateful"] is True and verdict["trial"]["second_error"] is None and model.calls == 1


AVERAGE = ("```python\ndef average(self):\n    if not getattr(self, 'readings', []):\n        raise ValueError('no readings yet')\n"
           "    return sum(self.readings) / len(self.readings)\n```")
ALWAYS_REFUSES = "```python\ndef average(self):\n    raise ValueError('no readings yet')\n```"
ZERO_WHEN_EMPTY = ("```python\ndef average(self):\n    readings = getattr(self, 'readings', [])\n"
                   "    return sum(readings) / len(readings) if readings else 0\n```")
AVERAGE_INTENT = "return the mean of the readings this object keeps; raise an error if it has none"


def test_a_message_the_intent_says_to_refuse_is_answered_by_the_refusal(image):
    """Regression (bench readings, playlist, inventory): the first message to a method may be one its
    intent says to refuse (the mean of no readings); every right candidate refused it and was
    rejected for that, three attempts and 60-140 s, and the cycle failed."""
    kernel, model, _ = make_kernel(image, [AVERAGE])
    reply = send(kernel, "average", intent=AVERAGE_INTENT)
    assert isinstance(reply, Error) and reply.code == "method_error"
    assert reply.message.startswith("ValueError: no readings yet (line 3 of average)")
    assert model.calls == 1
    [verdict] = artifacts(image, "verdict")
    assert verdict["chosen"] is True and verdict["trial"]["refused"].startswith("ValueError: no readings yet")
    with reading(image.db) as root:
        cycle = next(iter(root["orchestrator"].cycles.values()))
        assert cycle.outcome["reason"] == ("installed average: candidate 1.1 (it refuses this message, as the intent allows: "
                                           "ValueError: no readings yet (line 3 of average))")
    transact(image.db, lambda root: setattr(root["genesis"], "readings", [2, 4]))
    assert send(kernel, "average").value == 3.0


def test_a_refusal_the_intent_does_not_ask_for_fails_the_candidate(image):
    kernel, model, _ = make_kernel(image, [AVERAGE, ZERO_WHEN_EMPTY])
    assert send(kernel, "average", intent="return the mean of the readings this object keeps").value == 0
    first, second = artifacts(image, "verdict")
    assert first["failure"] == "ValueError" and first["trial"]["refused"] is None
    assert "Calling average() failed: ValueError: no readings yet (line 3 of average)" in model.prompts[1][1]


def test_a_method_that_refuses_unconditionally_is_not_refusing_on_purpose(image):
    kernel, model, _ = make_kernel(image, [ALWAYS_REFUSES, AVERAGE])
    reply = send(kernel, "average", intent=AVERAGE_INTENT)
    assert isinstance(reply, Error) and reply.message.startswith("ValueError: no readings yet (line 3 of average)")
    first, second = artifacts(image, "verdict")
    assert first["failure"] == "ValueError" and second["chosen"] is True and model.calls == 2


@pytest.mark.parametrize("intent, expected", [
    ("raise an error if the playlist is empty", True),
    ("if there are fewer than qty in stock, refuse and change nothing", True),
    ("return the mean; it fails when there are no readings", True),
    ("return the terror level", False),  # a word, not a part of one
    ("return the mean of the readings", False),
    (None, False),
])
def test_an_intent_anticipates_a_refusal_in_words(intent, expected):
    from batos.sandbox.trial import refusal_anticipated

    assert refusal_anticipated(intent) is expected


def test_no_model_checks_for_a_method_that_keeps_state(image):
    """Checks of the form f(x) == y cannot describe an answer that depends on earlier messages (the bench's
    BRICK wrote finish_todo([1, 2]) == [2] for a method taking an item), and they cost a model call."""
    def script(system, prompt):
        assert "test lines" not in prompt
        script.calls += 1
        return [RESETS, KEEPS][min(script.calls, 2) - 1]
    script.calls = 0
    kernel, _, _ = make_kernel(image, script, candidates=2, model_checks=4)
    assert send(kernel, "add_todo", "milk", intent=TODO_INTENT).value == ["milk"]
    assert artifacts(image, "checks") == []


def test_warming_up_evaluates_the_prefix_every_protocol_prompt_starts_with(image, tmp_path):
    """The first cycle after a start used to pay ~40 s of loading and cold prompt evaluation."""
    kernel, model, _ = make_kernel(image, ["", GOOD], tmp_path)
    assert kernel.engine.status()["warmth"] == "cold"
    kernel.engine.warm()
    assert kernel.engine.status()["warmth"] == "warm"
    [(system, prompt)] = model.prompts
    with reading(image.db) as root:
        assert system == root["brick"].system_prompt()
    assert send(kernel, "factorial", 5) == Result(id="r", value=120)
    warm_system, code = model.prompts[1]
    assert warm_system == system and code.startswith(prompt + "\n\n")


def test_a_warm_up_that_fails_says_why_in_the_status(image, tmp_path):
    def refuse(system, prompt):
        raise ModelError("the host died")

    engine = CycleEngine(image.db, SharedPersonas(ScriptedModel(refuse)), config=CycleConfig(candidates=1, model_checks=0))
    engine.warm()
    assert engine.status()["warmth"] == "failed: ModelError: the host died"
