"""The slower loops with scripted personas: Contrapunto and dissonance, goals, the strategic and philosophical loops."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from batos import memory
from batos.loops.amendments import AmendmentConfig, AmendmentError, codex_history, decide, list_proposals, revert_codex
from batos.loops.contrapunto import embedding_distance
from batos.substrate.llm import unit_score
from batos.cognition.cycle import CycleConfig, CycleEngine
from batos.kernel.core import Kernel
from batos.testing import ScriptedModel, SharedPersonas, drain
from batos.loops.service import Loops, LoopsConfig
from batos.substrate.adapters import list_adapters, revert_adapter
from batos.substrate.models import import_model
from batos.loops.motivator import MotivatorConfig, list_goals
from batos.loops.strategic import StrategicConfig
from batos.sandbox.runtime import MethodLimits
from batos.core.txn import reading, transact
from batos.wire.protocol import PROTOCOL_VERSION, Error, Result, Send

from .test_cycle import GOOD, INTENT, WRONG

AGREE = ("How should we cache lookups?",
         "Store each lookup result in a dictionary keyed by its query, so repeated lookups return instantly.",
         "Building on BRICK: storing each lookup result so repeated lookups return instantly spares people the wait.")
CONFLICT = ("Should we delete old user data?",
            "Yes: delete every user record older than a month; disk space is the binding constraint and the logs are cheap to lose.",
            "Building on BRICK: no. These are people's memories and the trust they placed in us; grief does not fit a disk quota.")


class Personas:
    """Scripted personas: each a callable over (system, prompt), with their prompts recorded."""

    def __init__(self, brick=None, robin=None, alfred=None, babs=None):
        def fixed(text):
            return lambda system, prompt: text

        self.models = {
            "BRICK": ScriptedModel(brick or fixed("I have nothing to add."), "brick-scripted"),
            "ROBIN": ScriptedModel(robin or fixed("Building on BRICK: fine."), "robin-scripted"),
            "ALFRED": ScriptedModel(alfred or fixed('{"score": 0.9, "reason": "clean"}'), "alfred-scripted"),
            "BABS": ScriptedModel(babs or fixed("{}"), "babs-scripted"),
        }
        self.shared = SharedPersonas(self.models)


def dialogue(brick_text, robin_text, judged):
    def robin(system, prompt):
        return json.dumps({"dissonance": judged, "reason": "r"}) if "How far apart" in prompt else robin_text

    return Personas(brick=lambda s, p: brick_text, robin=robin)


def make_loops(image, personas, engine=None, **config):
    loops_config = LoopsConfig(
        motivator=config.pop("motivator", MotivatorConfig(enabled=False)),
        strategic=config.pop("strategic", StrategicConfig(dataset_size=100)),
        amendments=config.pop("amendments", AmendmentConfig(threshold=0.6, window=3)),
        poll_seconds=0.05,
    )
    return Loops(image, personas.shared, engine, loops_config)


def engine_for(image, personas):
    # one candidate per attempt, no checks of BRICK's own: each scripted answer is one candidate
    return CycleEngine(image.db, personas.shared, config=CycleConfig(
        limits=MethodLimits(cpu_seconds=2, memory_bytes=256 << 20, wall_seconds=4), candidates=1, model_checks=0))


def send(kernel, target, selector, *args, intent=None):
    return kernel.send(Send(v=PROTOCOL_VERSION, id="r", kind="send", target=target, selector=selector, args=list(args), intent=intent))


# -- Contrapunto and dissonance ---------------------------------------------------------


def test_embedding_distance_orders_agreeing_below_conflicting_pairs():
    assert embedding_distance(AGREE[1], AGREE[2]) < embedding_distance(CONFLICT[1], CONFLICT[2])


def test_contrapunto_stores_the_exchange_where_robin_builds_on_brick(image):
    personas = dialogue(AGREE[1], AGREE[2], 0.1)
    loops = make_loops(image, personas)
    record = loops.contrapunto.run(AGREE[0])
    robin_prompts = [p for _s, p in personas.models["ROBIN"].prompts]
    assert AGREE[1] in robin_prompts[0]  # ROBIN was shown BRICK's answer to build on
    assert record["builds_on"] is True and record["judged"] == 0.1
    assert record["dissonance"] == pytest.approx((0.1 + record["distance"]) / 2, abs=1e-4)
    with reading(image.db) as root:
        stored = root["orchestrator"].contrapunti[record["id"]]
        assert (stored["brick"], stored["robin"]) == (AGREE[1], AGREE[2])
        assert [(s["source"], s["ref"]) for s in root["orchestrator"].dissonance] == [("contrapunto", record["id"])]
        hits = memory.search(root["knowledge_catalog"], "cache lookups dictionary", k=3)
        assert hits[0].doc_id == f"contrapunto:{record['id']}"


def test_robin_is_reminded_once_to_build_on_brick(image):
    answers = iter(["Caching is about people.", AGREE[2]])

    def robin(system, prompt):
        return '{"dissonance": 0.2, "reason": "r"}' if "How far apart" in prompt else next(answers)

    personas = Personas(brick=lambda s, p: AGREE[1], robin=robin)
    record = make_loops(image, personas).contrapunto.run(AGREE[0])
    assert record["robin"] == AGREE[2] and record["builds_on"] is True
    assert "did not build on BRICK" in personas.models["ROBIN"].prompts[1][1]


def test_conflicting_views_score_higher_dissonance_than_agreeing_ones(image):
    agree = make_loops(image, dialogue(AGREE[1], AGREE[2], 0.1)).contrapunto.run(AGREE[0])
    conflict = make_loops(image, dialogue(CONFLICT[1], CONFLICT[2], 0.9)).contrapunto.run(CONFLICT[0])
    assert agree["dissonance"] < 0.35 < 0.6 < conflict["dissonance"]


@pytest.mark.parametrize("verdict", ["no json here", '{"dissonance": 7}', '{"reason": "missing"}'])
def test_an_unusable_judgement_leaves_the_embedding_reading_alone(image, verdict):
    def robin(system, prompt):
        return verdict if "How far apart" in prompt else CONFLICT[2]

    record = make_loops(image, Personas(brick=lambda s, p: CONFLICT[1], robin=robin)).contrapunto.run(CONFLICT[0])
    assert record["judged"] is None and record["dissonance"] == record["distance"]
    assert "unusable answer" in record["judge_reason"] or "dissonance 7.0 outside [0, 1]" == record["judge_reason"]


def test_a_judgement_cut_off_in_its_reason_keeps_its_score(image):
    """Regression: the real 1.5B model's judgement ran out of tokens in the middle of
    its reason, and the whole judgement was thrown away with its score."""
    cut = '{"dissonance": 0.5, "reason": "The logical view and the relational view both hig'

    def robin(system, prompt):
        return cut if "How far apart" in prompt else CONFLICT[2]

    record = make_loops(image, Personas(brick=lambda s, p: CONFLICT[1], robin=robin)).contrapunto.run(CONFLICT[0])
    assert record["judged"] == 0.5
    assert record["judge_reason"] == "The logical view and the relational view both hig (cut off)"
    assert record["dissonance"] == pytest.approx((0.5 + record["distance"]) / 2, abs=1e-4)  # distance is stored rounded


@pytest.mark.parametrize("text, expected", [
    ('```json\n{"score": 0.7, "reason": "say \\"hi', (0.7, 'say "hi (cut off)')),  # fenced (no grammar), cut in an escape-free place
    ('{"score": 0.7, "reason": "a\\', (0.7, "a\\ (cut off)")),  # cut inside an escape
    ('{"score":0.5,"reason":"ok"}\n{"score":0.6,"reason":"x"}', None),  # two objects: not a cut-off answer
    ('{"score": 0.5, "reason": "ok"', None),  # the reason closed, the object did not
    ('{"reason": "first", "score": 0.5', None),  # the score is not first
])
def test_only_an_answer_cut_inside_its_reason_is_salvaged(text, expected):
    score, reason = unit_score(text, "score")
    assert (score, reason) == expected if expected else score is None and reason.startswith("unusable answer")


def test_contemplate_is_a_kernel_message_and_needs_a_question(image):
    loops = make_loops(image, dialogue(AGREE[1], AGREE[2], 0.2))
    kernel = Kernel(image, loops=loops)
    reply = send(kernel, "genesis", "contemplate", intent=AGREE[0])
    assert isinstance(reply, Result) and reply.value["brick"] == AGREE[1] and 0 <= reply.value["dissonance"] <= 1
    refused = send(kernel, "genesis", "contemplate")
    assert isinstance(refused, Error) and refused.code == "bad_arguments" and "needs a question" in refused.message


def test_cycles_record_dissonance_from_rejected_attempts(image):
    personas = Personas(brick=lambda s, p, it=iter([WRONG, GOOD]): next(it))
    kernel = Kernel(image, engine=engine_for(image, personas))
    reply = kernel.send(Send(v=PROTOCOL_VERSION, id="r", kind="send", target="genesis", selector="factorial", args=[5], intent=INTENT))
    assert reply.value == 120
    with reading(image.db) as root:
        [cycle] = root["orchestrator"].cycles.values()
        assert cycle.outcome["dissonance"] == 0.25  # one rejected attempt
        assert [s["score"] for s in root["orchestrator"].dissonance] == [0.25]


def test_a_failed_cycle_records_the_highest_dissonance(image):
    personas = Personas(brick=lambda s, p: WRONG)
    kernel = Kernel(image, engine=engine_for(image, personas))
    reply = kernel.send(Send(v=PROTOCOL_VERSION, id="r", kind="send", target="genesis", selector="factorial", args=[5], intent=INTENT))
    assert isinstance(reply, Error)
    with reading(image.db) as root:
        assert [s["score"] for s in root["orchestrator"].dissonance] == [1.0]


# -- the autotelic heartbeat ---------------------------------------------------------------


TRIPLE = "```python\ndef triple_factorial(self):\n    return self.factorial(3) * 3\n```"


def learned_factorial(image, personas):
    engine = engine_for(image, personas)
    kernel = Kernel(image, engine=engine)
    assert kernel.send(Send(v=PROTOCOL_VERSION, id="r", kind="send", target="genesis", selector="factorial", args=[5], intent=INTENT)).value == 120
    return engine


def test_a_new_method_becomes_a_goal_pursued_through_a_normal_cycle(image):
    script = iter([GOOD, '{"selector": "triple_factorial", "intent": "return three times factorial of 3"}', TRIPLE])
    personas = Personas(brick=lambda s, p: next(script))
    engine = learned_factorial(image, personas)
    loops = make_loops(image, personas, engine, motivator=MotivatorConfig(enabled=True, idle_seconds=0, goals_per_hour=5))
    loops.activity.last = 0  # long idle
    assert loops.step() is True
    [goal] = list_goals(image.db)
    assert (goal["kind"], goal["status"]) == ("compose", "done")
    assert goal["text"].startswith("factorial was just created on genesis")
    assert "triple_factorial: COMPLETE" in goal["result"]
    with reading(image.db) as root:
        assert root["genesis"].triple_factorial() == 18
    drain(loops)  # ALFRED judges the goal's cycle first (queued when it finished)
    assert loops.step() is True  # the new skill is proposed as a goal in turn, but BRICK's script has run out...
    assert [g["status"] for g in list_goals(image.db)][-1] == "failed"  # ...so it fails, recorded, not fatal


def test_goals_are_rate_limited_per_hour(image):
    personas = Personas(brick=lambda s, p, it=iter([GOOD]): next(it))
    engine = learned_factorial(image, personas)
    loops = make_loops(image, personas, engine, motivator=MotivatorConfig(enabled=True, idle_seconds=0, goals_per_hour=0))
    loops.activity.last = 0
    assert loops.step() is False
    assert [g["status"] for g in list_goals(image.db)] == ["pending"]  # proposed, visible, but not started


def test_the_heartbeat_waits_for_idle_time_and_can_be_switched_off(image):
    personas = Personas(brick=lambda s, p, it=iter([GOOD]): next(it))
    engine = learned_factorial(image, personas)
    assert make_loops(image, personas, engine, motivator=MotivatorConfig(enabled=False, idle_seconds=0)).step() is False
    waiting = make_loops(image, personas, engine, motivator=MotivatorConfig(enabled=True, idle_seconds=3600))
    assert waiting.step() is False
    assert list_goals(image.db) == []


def test_architect_messages_go_before_goals(image):
    script = iter([GOOD, '{"selector": "triple_factorial", "intent": "three times factorial of 3"}', TRIPLE])
    personas = Personas(brick=lambda s, p: next(script))
    engine = learned_factorial(image, personas)
    loops = make_loops(image, personas, engine, motivator=MotivatorConfig(enabled=True, idle_seconds=0, goals_per_hour=5))
    loops.activity.last = 0
    busy = threading.Event()
    busy.set()
    loops.activity.in_flight = lambda: 1 if busy.is_set() else 0
    worker = threading.Thread(target=loops.step)
    worker.start()
    time.sleep(0.5)
    assert list_goals(image.db) == []  # nothing proposed or started while the Architect is served
    busy.clear()
    worker.join(30)
    assert [g["status"] for g in list_goals(image.db)] == ["done"]


def test_a_high_dissonance_exchange_becomes_a_protocol_goal(image):
    personas = dialogue(CONFLICT[1], CONFLICT[2], 0.95)
    loops = make_loops(image, personas, motivator=MotivatorConfig(enabled=True, idle_seconds=0, goals_per_hour=5))
    first = loops.contrapunto.run(CONFLICT[0])
    loops.activity.last = 0
    assert loops.step() is True
    [goal] = list_goals(image.db)
    assert goal["kind"] == "protocol" and goal["source"] == f"contrapunto:{first['id']}" and goal["status"] == "done"
    with reading(image.db) as root:
        follow_up = [c for c in root["orchestrator"].contrapunti.values() if c["origin"] == "goal"]
    assert follow_up and follow_up[0]["question"].startswith("What protocol would resolve")


# -- the strategic loop ------------------------------------------------------------------------


def test_alfred_scores_decide_what_enters_the_golden_dataset(image):
    scores = iter(['{"score": 0.9, "reason": "clean"}', '{"score": 0.2, "reason": "meh"}', "not json"])
    personas = Personas(brick=lambda s, p, it=iter([GOOD, GOOD.replace("factorial", "fact2")]): next(it),
                        alfred=lambda s, p: next(scores))
    engine = engine_for(image, personas)
    loops = make_loops(image, personas, engine)  # listens to the engine from now on
    kernel = Kernel(image, engine=engine, loops=loops)
    assert send(kernel, "genesis", "factorial", 5, intent=INTENT).value == 120
    drain(loops)
    with reading(image.db) as root:
        [golden] = root["orchestrator"].golden["BRICK"]
        assert golden["score"] == 0.9 and "math.factorial" in golden["completion"] and golden["ref"].startswith("cycle:")
    assert "```python" in personas.models["ALFRED"].prompts[0][1]  # ALFRED judged the installed source
    drain(loops)
    assert loops.strategist.judge_cycle(golden["ref"].split(":")[1]) is None  # judged once only


def test_a_persona_on_a_gguf_model_skips_training_and_says_why(image):
    personas = Personas()
    loops = make_loops(image, personas, strategic=StrategicConfig(dataset_size=1))
    transact(image.db, lambda root: root["orchestrator"].golden.__setitem__("ROBIN", [{"system": "s", "prompt": "p", "completion": "c"}]))
    record = loops.strategist.maybe_train("ROBIN")
    assert record["status"] == "skipped" and "needs a transformers model" in record["error"]
    assert list_adapters(image) == []


def golden_examples(image, persona, n):
    examples = [{"persona": persona, "system": "You are BRICK.", "prompt": f"Teach genesis to answer double_{i}(x).",
                 "completion": f"```python\ndef double_{i}(self, x):\n    return 2 * x\n```", "ref": f"cycle:x{i}", "score": 0.9}
                for i in range(n)]
    transact(image.db, lambda root: root["orchestrator"].golden.__setitem__(persona, examples))


def test_real_lora_training_on_the_tiny_model_swaps_in_one_transaction_and_reverts(image, tiny_model_dir):
    import_model(image, tiny_model_dir, "tiny", ["BRICK"])
    loops = make_loops(image, Personas(), strategic=StrategicConfig(dataset_size=3, train_steps=6, rank=4))
    # the strategist pins through the product's personas (bindings from the image), as the kernel does
    from batos.substrate.modelhost import ModelPool
    from batos.substrate.personas import HostedPersonas

    pool = ModelPool()
    loops.strategist.personas = HostedPersonas(image.db, pool)
    golden_examples(image, "BRICK", 3)
    with reading(image.db) as root:
        pinned_before = loops.strategist.personas.pin(root)["BRICK"]
    record = loops.strategist.maybe_train("BRICK")
    assert record["status"] == "trained", record
    metrics = record["metrics"]
    assert metrics["steps"] == 6 and metrics["device"] == "cpu" and metrics["loss_last"] < metrics["loss_first"]
    with reading(image.db) as root:
        assert root["brick"].adapter == "brick-lora-1"
        assert root["orchestrator"].trainings[-1]["adapter"] == "brick-lora-1"
        assert root["brick"].adapter_history[-1]["reason"] == "strategic loop: trained on 3 golden examples"
    assert pinned_before["adapter"] is None  # a cycle pinned before the swap keeps the bare base
    trained = loops.strategist.personas.speaker("BRICK")
    assert trained.adapter["name"].startswith("brick-lora-1-")
    assert trained.complete("s", "Teach genesis", max_tokens=4, temperature=0.0) is not None  # the adapter loads and serves
    pool.close()
    assert loops.strategist.maybe_train("BRICK") is None  # nothing new since
    assert revert_adapter(image, "BRICK") is None
    with reading(image.db) as root:
        assert root["brick"].adapter is None


def test_a_failed_training_swaps_nothing(image, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    import_model(image, broken, "broken", ["BRICK"])
    loops = make_loops(image, Personas(), strategic=StrategicConfig(dataset_size=2, train_steps=2))
    from batos.substrate.modelhost import ModelPool
    from batos.substrate.personas import HostedPersonas

    loops.strategist.personas = HostedPersonas(image.db, ModelPool())
    golden_examples(image, "BRICK", 2)
    record = loops.strategist.maybe_train("BRICK")
    assert record["status"] == "failed" and record["error"]
    assert list_adapters(image) == []
    with reading(image.db) as root:
        assert root["brick"].adapter is None and list(root["brick"].adapter_history) == []
        assert [t["status"] for t in root["orchestrator"].trainings] == ["failed"]


# -- the philosophical loop ---------------------------------------------------------------------


DRAFT = {"persona": "BRICK", "field": "method", "new_text": "Decompose first, then check each step against the Architect's intent.",
         "rationale": "Three failed cycles in a row came from skipping the intent."}


def signals(image, *scores):
    def work(root):
        for i, score in enumerate(scores):
            root["orchestrator"].dissonance.append({"at": time.time(), "score": score, "source": "cycle", "ref": f"c{i}"})

    transact(image.db, work)


def test_low_or_short_dissonance_drafts_nothing(image):
    loops = make_loops(image, Personas(alfred=lambda s, p: json.dumps(DRAFT)))
    signals(image, 0.9, 0.9)
    assert loops.amendments.check() is None  # fewer than the window
    signals(image, 0.0, 0.0)
    assert loops.amendments.check() is None  # mean of the window below the threshold
    assert personas_calls(loops) == 0


def personas_calls(loops):
    return loops.amendments.personas.models["ALFRED"].calls


def test_persistent_dissonance_drafts_a_pending_proposal_that_changes_nothing_alone(image):
    loops = make_loops(image, Personas(alfred=lambda s, p: json.dumps(DRAFT)))
    with reading(image.db) as root:
        before = dict(root["brick"].codex)
    signals(image, 0.8, 0.9, 1.0)
    proposal = loops.amendments.check()
    assert proposal["status"] == "pending" and proposal["old_text"] == before["method"] and proposal["new_text"] == DRAFT["new_text"]
    assert len(proposal["evidence"]) == 3 and proposal["mean"] == 0.9
    assert loops.amendments.check() is None  # one pending at a time
    with reading(image.db) as root:
        assert dict(root["brick"].codex) == before  # no approval, no change
    assert [p["id"] for p in list_proposals(image.db)] == [proposal["id"]]
    rejected = decide(image.db, proposal["id"], approve=False, reason="not yet")
    assert rejected["status"] == "rejected" and rejected["decision_reason"] == "not yet"
    with reading(image.db) as root:
        assert dict(root["brick"].codex) == before
    with pytest.raises(AmendmentError, match="is rejected, not pending"):
        decide(image.db, proposal["id"], approve=True)
    assert loops.amendments.check() is None  # the same evidence is not drafted again


def test_an_approved_amendment_is_used_by_the_next_cycle_and_can_be_reverted(image):
    personas = Personas(alfred=lambda s, p: json.dumps(DRAFT), brick=lambda s, p, it=iter([GOOD]): next(it))
    loops = make_loops(image, personas)
    kernel = Kernel(image, engine=engine_for(image, personas), loops=loops)
    signals(image, 0.9, 0.9, 0.9)
    proposal = loops.amendments.check()
    assert send(kernel, "orchestrator", "proposals").value[0]["id"] == proposal["id"]
    assert kernel.status()["loops"] == {"heartbeat": False, "goals_pending": 0, "goals_running": 0, "proposals_pending": 1, "slow_jobs_queued": 0}
    assert send(kernel, "orchestrator", "approve", proposal["id"]).value["status"] == "approved"
    assert send(kernel, "genesis", "factorial", 5, intent=INTENT).value == 120
    assert all(DRAFT["new_text"] in system for system, _ in personas.models["BRICK"].prompts)  # no restart needed
    history = codex_history(image.db, "BRICK")
    assert len(history) == 2 and history[0]["proposal"] == proposal["id"] and history[1]["codex"]["method"] == DRAFT["new_text"]
    restored = revert_codex(image.db, "BRICK")
    with reading(image.db) as root:
        assert root["brick"].codex["method"] == restored["codex"]["method"] != DRAFT["new_text"]
    with pytest.raises(AmendmentError, match="never been amended"):
        revert_codex(image.db, "BRICK")


def test_an_approval_of_a_stale_proposal_is_refused(image):
    loops = make_loops(image, Personas(alfred=lambda s, p: json.dumps(DRAFT)))
    signals(image, 0.9, 0.9, 0.9)
    proposal = loops.amendments.check()

    def edit(root):
        root["brick"].codex["method"] = "changed by hand"

    transact(image.db, edit)
    with pytest.raises(AmendmentError, match="changed since proposal"):
        decide(image.db, proposal["id"], approve=True)
    with reading(image.db) as root:
        assert root["brick"].codex["method"] == "changed by hand"


@pytest.mark.parametrize("draft, error", [
    ("I would rather not", "unusable draft"),
    (json.dumps({**DRAFT, "persona": "JOKER"}), "unknown persona"),
    (json.dumps({**DRAFT, "field": "pillars"}), "cannot be amended"),
    (json.dumps({**DRAFT, "new_text": "short"}), "too short"),
])
def test_a_bad_draft_is_recorded_as_unusable_and_changes_nothing(image, draft, error):
    loops = make_loops(image, Personas(alfred=lambda s, p: draft))
    signals(image, 0.9, 0.9, 0.9)
    record = loops.amendments.check()
    assert record["status"] == "unusable" and error in record["error"]
    assert list_proposals(image.db) == []
    with pytest.raises(AmendmentError, match="is unusable, not pending"):
        decide(image.db, record["id"], approve=True)


def test_decisions_through_the_kernel_report_bad_ids_clearly(image):
    kernel = Kernel(image, loops=make_loops(image, Personas()))
    missing = send(kernel, "orchestrator", "approve", "nope")
    assert isinstance(missing, Error) and missing.code == "refused" and "no proposal 'nope'" in missing.message
    bare = send(kernel, "orchestrator", "reject")
    assert isinstance(bare, Error) and bare.code == "bad_arguments"
    assert send(kernel, "orchestrator", "goals").value == []


# -- end to end: a real kernel process, its socket, and the console ------------------------------


def test_console_contemplates_sees_the_proposal_and_approves_it(image_uri, tmp_path):
    import io
    import subprocess
    import sys

    from clients.client import KernelClient
    from clients.console import Console

    from .conftest import BIN, free_port
    from .scripted_kernel import AMENDMENT
    from .test_learning import ROOT, wait_for

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "script.json").write_text("[]")
    proc = subprocess.Popen([sys.executable, "-m", "tests.scripted_kernel", image_uri, endpoint, str(tmp_path / "script.json"), "loops"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "kernel.log", "wb"))
    try:
        wait_for(endpoint, proc)
        out = io.StringIO()
        with KernelClient(endpoint) as client:
            console = Console(client, out)
            console.refresh_roots()
            assert console.handle(":proposals")
            assert "no pending proposals" in out.getvalue()
            assert console.handle(":contemplate should we delete old user data?")
            deadline = time.monotonic() + 30  # ALFRED drafts on the slow lane, after the reply
            while "new: " + AMENDMENT["new_text"] not in out.getvalue() and time.monotonic() < deadline:
                console.handle(":proposals")
                time.sleep(0.3)
            text = out.getvalue()
            assert "[ROBIN] the relational view" in text and "ROBIN: Building on BRICK: no." in text
            assert "dissonance " in text and "ROBIN judged 0.95: they conflict" in text
            proposal_id = re.search(r"  (\w{8}) ROBIN\.method", text).group(1)
            assert console.handle(f":approve {proposal_id}")
            assert '"status": "approved"' in out.getvalue()
            assert console.handle(f":approve {proposal_id}")
            assert f"error [refused]: proposal {proposal_id} is approved, not pending" in out.getvalue()
            assert console.handle(":goals") and "no goals yet" in out.getvalue()
        shown = subprocess.run([str(BIN / "batos"), "codex", "history", "robin", "--image", image_uri, "--json"],
                               capture_output=True, text=True, timeout=60)  # read-only: beside the running kernel
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)[-1]["codex"]["method"] == AMENDMENT["new_text"]
    finally:
        proc.terminate()
        proc.wait(30)
    logged = subprocess.run([str(BIN / "batos"), "log", "--file", str(tmp_path / "metacognition.jsonl"), "--event", "proposal"],
                            capture_output=True, text=True, timeout=60)
    assert "status=pending" in logged.stdout and "status=approved" in logged.stdout


def test_codex_cli_lists_reverts_and_refuses_clearly(image_uri):
    import subprocess

    from batos.core.image import open_image

    from .conftest import BIN

    with open_image(image_uri) as img:
        loops = make_loops(img, Personas(alfred=lambda s, p: json.dumps(DRAFT)))
        signals(img, 0.9, 0.9, 0.9)
        proposal = loops.amendments.check()

    def batos(*args):
        return subprocess.run([str(BIN / "batos"), "codex", *args, "--image", image_uri], capture_output=True, text=True, timeout=60)

    pending = batos("proposals")
    assert pending.returncode == 0 and f"{proposal['id']} [pending] BRICK.method" in pending.stdout and DRAFT["new_text"] in pending.stdout
    with open_image(image_uri) as img:
        decide(img.db, proposal["id"], approve=True)
    assert "no pending proposals" in batos("proposals").stdout
    assert "[approved]" in batos("proposals", "--all").stdout
    history = batos("history", "brick")
    assert history.returncode == 0 and history.stdout.count("method:") == 2 and f"by proposal {proposal['id']}" in history.stdout
    reverted = batos("revert", "BRICK")
    assert reverted.returncode == 0 and f"before proposal {proposal['id']}" in reverted.stdout
    for args, message in ((("revert", "brick"), "never been amended"), (("history", "joker"), "unknown persona 'joker'")):
        refused = batos(*args)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("option, message", [
    (["--judge-threshold", "1.5"], "--judge-threshold must be between 0 and 1, not 1.5"),
    (["--dissonance-threshold", "-0.1"], "--dissonance-threshold must be between 0 and 1"),
    (["--golden-size", "0"], "--golden-size must be at least 1, not 0"),
    (["--dissonance-window", "0"], "--dissonance-window must be at least 1"),
    (["--goals-per-hour", "-2"], "cannot be negative"),
    (["--model-threads", "0"], "--model-threads must be at least 1, not 0"),
])
def test_kernel_refuses_nonsense_loop_settings_before_opening_anything(tmp_path, option, message):
    import subprocess

    from .conftest import BIN

    image = tmp_path / "never.fs"
    result = subprocess.run([str(BIN / "batos"), "kernel", "--image", str(image), "--model", "none", *option],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not image.exists()
