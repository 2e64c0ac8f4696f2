"""`batos cycles` and `:cycle`: one screen that says why a cycle ended as it did."""

from __future__ import annotations

import json
import subprocess

import pytest

from batos.cognition.report import UnknownCycle, cycle_report, format_cycle, list_cycles
from batos.core.txn import reading, transact
from batos.wire.protocol import Error

from .conftest import BIN
from .test_cycle import AVERAGE, AVERAGE_INTENT, GOOD, WRONG, make_kernel, send

PASTED = "def double(n):\n    '''\n    >>> double(2)\n    4\n    '''\n"


def test_a_failed_cycle_tells_why_in_one_screen(image_uri, image):
    kernel, _, _ = make_kernel(image, lambda system, prompt: WRONG)
    reply = send(kernel, "factorial", 5)
    assert isinstance(reply, Error)
    with reading(image.db) as root:
        [row] = list_cycles(root)
        report = cycle_report(root, row["id"][:4])
    assert f"(see `batos cycles show {row['id']}` or :cycle {row['id']})" in reply.message
    assert (row["state"], row["selector"], row["target"], row["attempts"], row["candidates"]) == ("FAILED", "factorial", "genesis", 3, 7)
    text = format_cycle(report)
    assert text.splitlines()[0] == f"cycle {row['id']}  FAILED  genesis.factorial(5)"
    assert "    FAIL [intent] factorial(4) -> expected 24, got 8" in text
    assert "    repeats candidate 1.1: not trialled" in text
    assert "  verdict 2.1: rejected (duplicate)" in text
    assert "  outcome: FAILED: no acceptable method after 3 attempts" in text
    assert text.splitlines()[-1].startswith("  time: IDLE ")
    json.dumps(report)  # plain data throughout


def test_a_repaired_candidate_shows_its_repairs(image):
    kernel, _, _ = make_kernel(image, ["```python\n" + PASTED + "    return n * 2\n```"])
    assert send(kernel, "double", 3, intent=PASTED).value == 6
    with reading(image.db) as root:
        text = format_cycle(cycle_report(root, list_cycles(root)[0]["id"]))
    assert "    repaired: added self as the first parameter" in text
    assert "  verdict 1.1: chosen" in text
    assert "    ok   [intent] double(2) -> expected 4, got 4" in text


def test_a_refusal_installed_as_the_answer_says_so(image):
    kernel, _, _ = make_kernel(image, [AVERAGE])
    assert isinstance(send(kernel, "average", intent=AVERAGE_INTENT), Error)
    with reading(image.db) as root:
        text = format_cycle(cycle_report(root, list_cycles(root)[0]["id"]))
    assert "    trial average(): refused on purpose: ValueError: no readings yet (line 3 of average)" in text


def test_an_unknown_or_ambiguous_id_is_a_clear_error(image):
    kernel, _, _ = make_kernel(image, [GOOD])
    send(kernel, "factorial", 5)

    def alias(root):  # a second id that starts with the first one
        cycles = root["orchestrator"].cycles
        [cycle_id] = list(cycles.keys())
        cycles[cycle_id + "0"] = cycles[cycle_id]
        return cycle_id
    cycle_id = transact(image.db, alias)
    with reading(image.db) as root:
        with pytest.raises(UnknownCycle, match="no cycle with id 'zzz'"):
            cycle_report(root, "zzz")
        with pytest.raises(UnknownCycle, match=f"cycle id '{cycle_id[:3]}' is ambiguous: {cycle_id}, {cycle_id}0"):
            cycle_report(root, cycle_id[:3])
        assert cycle_report(root, cycle_id + "0")["id"] == cycle_id


def test_records_from_before_and_unknown_kinds_still_render(image):
    kernel, _, _ = make_kernel(image, [GOOD])
    send(kernel, "factorial", 5)

    def age(root):
        [cycle] = root["orchestrator"].cycles.values()
        for a in cycle.artifacts:
            for key in ("index", "repairs", "source", "strategy", "temperature", "seed", "passed_intent", "chosen", "failure"):
                a.pop(key, None)
        cycle.artifacts.append({"kind": "future_kind", "answer": 42, "at": 1.0})
        cycle.artifacts = cycle.artifacts
    transact(image.db, age)
    with reading(image.db) as root:
        text = format_cycle(cycle_report(root, list_cycles(root)[0]["id"]))
    assert "  candidate 1.1 (scripted" in text and "  future_kind:\n    answer: 42" in text


def test_the_cycles_command(image_uri, image):
    kernel, _, _ = make_kernel(image, [GOOD])
    send(kernel, "factorial", 5)
    image.close()
    listed = subprocess.run([str(BIN / "batos"), "cycles", "list", "--image", image_uri], capture_output=True, text=True)
    assert listed.returncode == 0 and " COMPLETE " in listed.stdout and "genesis.factorial" in listed.stdout
    cycle_id = listed.stdout.split()[0]
    shown = subprocess.run([str(BIN / "batos"), "cycles", "show", cycle_id[:5], "--image", image_uri], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.startswith(f"cycle {cycle_id}  COMPLETE  genesis.factorial(5)")
    missing = subprocess.run([str(BIN / "batos"), "cycles", "show", "nope", "--image", image_uri], capture_output=True, text=True)
    assert missing.returncode != 0 and "no cycle with id 'nope'" in missing.stderr
