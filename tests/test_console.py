"""The Architect's console: line parsing, translation, and a session against a live kernel."""

from __future__ import annotations

import io
import re
import subprocess
import time

import pytest

from batos.substrate.embedded import assemble
from clients.client import KernelClient
from clients.console import Console, ConsoleError, DirectSend, Meta, NaturalLanguage, parse_line
from clients.translate import ModelTranslator, RuleTranslator

from .conftest import BIN
from .kernelproc import KernelProcess

ROOTS = {"genesis", "brick", "traits"}


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", None),
        ("   ", None),
        (":help", Meta("help")),
        (":source traits about", Meta("source", ["traits", "about"])),
        ("genesis factorial 5", DirectSend("genesis", "factorial", [5])),
        ("genesis.factorial(5)", DirectSend("genesis", "factorial", [5])),
        ("genesis.about", DirectSend("genesis", "about")),
        ("genesis add 2 b=3", DirectSend("genesis", "add", [2], {"b": 3})),
        ("genesis.add(2, b=[1, 'x'])", DirectSend("genesis", "add", [2], {"b": [1, "x"]})),
        ('genesis greet "Bruce Wayne" hello', DirectSend("genesis", "greet", ["Bruce Wayne", "hello"])),
        ("0x2a about", DirectSend("0x2a", "about")),
        ("0x2a.describe()", DirectSend("0x2a", "describe")),
        ('genesis.define_method("sq", "def sq(self, x):\\n    return x*x\\n")',
         DirectSend("genesis", "define_method", ["sq", "def sq(self, x):\n    return x*x\n"])),
        ("create a method to report the current system time", NaturalLanguage("create a method to report the current system time")),
        ("stranger about", NaturalLanguage("stranger about")),
        ("genesis", NaturalLanguage("genesis")),
    ],
)
def test_parse_line(line, expected):
    assert parse_line(line, ROOTS) == expected


@pytest.mark.parametrize("line", ["genesis.add(1, x=os.system('ls'))", "genesis.add(*xs)", "genesis.add(1,", "genesis.add(**kw)"])
def test_parse_line_refuses_what_is_not_a_literal_call(line):
    with pytest.raises(ConsoleError):
        parse_line(line, ROOTS)


@pytest.mark.parametrize(
    "text, target, selector, args",
    [
        ("create a method to report the current system time", "genesis", "report_current_system_time", []),
        ("teach brick a method called sumSquares that adds the squares of 3 and 4", "brick", "sum_squares", [3, 4]),
        ("please compute the factorial of 5", "genesis", "compute_factorial", [5]),
        ("!!!", "genesis", "do_it", []),
        # regression: "add an item to a todo list" lost the item; quoted values are arguments too
        ("add 'buy milk' to the todo list", "genesis", "buy_milk_todo_list", ["buy milk"]),
        ('greet "Ada Lovelace" 3 times', "genesis", "greet_ada_lovelace_times", ["Ada Lovelace", 3]),
    ],
)
def test_rule_translator(text, target, selector, args):
    brief = RuleTranslator().translate(text, sorted(ROOTS))
    assert (brief.target, brief.selector, brief.args, brief.intent, brief.translated_by) == (target, selector, args, text, "rules")


def test_a_brief_keeps_every_value_the_request_mentions():
    from clients.translate import MissionBrief, keep_arguments

    lost = MissionBrief(target="genesis", selector="add_todo_item", args=[], intent="add an item to the todo list")
    assert keep_arguments(lost, "add 'buy milk' to my todo list, priority 2").args == ["buy milk", 2]
    kept = MissionBrief(target="genesis", selector="add_todo", args=["buy milk"], intent="add it")
    assert keep_arguments(kept, "add 'buy milk' to my todo list").args == ["buy milk"]
    assert keep_arguments(kept, "don't add it").args == ["buy milk"]  # an apostrophe is no quote


def test_model_translator_produces_a_valid_brief_with_the_embedded_model():
    """The real 1.5B GGUF through llama-cpp-python, constrained by the brief's schema."""
    translator = ModelTranslator(assemble())
    brief = translator.translate("create a method to report the current system time", sorted(ROOTS))
    assert brief.translated_by == "model"
    assert brief.target in ROOTS
    assert re.fullmatch(r"[a-z][a-z0-9_]*", brief.selector)
    assert "time" in brief.selector
    assert brief.intent


@pytest.fixture
def kernel(image_uri, tmp_path):
    with KernelProcess(image_uri, log=tmp_path / "kernel.log") as k:
        yield k


def test_console_session_in_process(kernel):
    out = io.StringIO()
    with KernelClient(kernel.endpoint) as client:
        console = Console(client, out)
        console.refresh_roots()
        lines = [
            "genesis.define_method('sq', 'def sq(self, x):\\n    return x * x\\n')",
            "genesis sq 7",
            "genesis.sq(8)",
            ":objects",
            ":inspect genesis",
            ":source genesis sq",
            "genesis sq",
            "please square the number 4",
            ":nonsense",
            "genesis.sq(os)",
        ]
        for line in lines:
            assert console.handle(line) is True
        assert console.handle(":quit") is False
    text = out.getvalue()
    assert "\n49\n" in text and "\n64\n" in text
    assert "orchestrator" in text  # :objects
    assert "method sq               v1 by architect" in text  # :inspect
    assert "def sq(self, x):" in text  # :source
    assert "error [bad_arguments]: sq: missing a required argument: 'x'" in text
    assert "brief (rules): genesis.square_number([4])" not in text
    assert "brief (rules): genesis.square_number(4)" in text
    assert "error [not_understood]: genesis does not understand 'square_number'" in text
    assert "unknown or incomplete command :nonsense" in text
    assert "error: arguments must be literals" in text


def test_console_process_survives_a_kernel_restart(image_uri, tmp_path):
    first = KernelProcess(image_uri, log=tmp_path / "k1.log")
    first.wait_ready()
    console = subprocess.Popen(
        [str(BIN / "batos"), "console", "--endpoint", first.endpoint, "--no-model", "--timeout", "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        console.stdin.write("genesis.define_method('hi', 'def hi(self):\\n    return \"hello\"\\n')\ngenesis hi\n")
        console.stdin.flush()
        assert first.stop() == 0
        restarted = KernelProcess(image_uri, endpoint=first.endpoint, log=tmp_path / "k2.log")
        restarted.wait_ready()
        time.sleep(0.2)
        console.stdin.write("genesis hi\n:quit\n")
        console.stdin.flush()
        out, err = console.communicate(timeout=60)
    finally:
        if console.poll() is None:
            console.kill()
        if "restarted" in locals():
            restarted.stop()
    assert console.returncode == 0, err
    assert out.count("hello") == 2, out


def test_ctrl_c_cancels_waiting_but_not_the_console(kernel):
    import signal

    from clients.client import make_ping, make_send

    with KernelClient(kernel.endpoint) as setup:
        for selector, body in [("slow", "    import time\n    time.sleep(3)\n    return 'late'\n"), ("hi", "    return 'hello'\n")]:
            assert setup.request(make_send("genesis", "define_method", [selector, f"def {selector}(self):\n{body}"])).kind == "result"
    console = subprocess.Popen(
        [str(BIN / "batos"), "console", "--endpoint", kernel.endpoint, "--no-model"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running the suite in the background ignores SIGINT, and the
        # ignoring is inherited; an Architect's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        console.stdin.write("genesis slow\n")
        console.stdin.flush()
        with KernelClient(kernel.endpoint) as probe:
            deadline = time.monotonic() + 20
            while probe.request(make_ping()).status["in_flight"] == 0:  # only `slow` can be in flight
                assert time.monotonic() < deadline, "slow never started"
                time.sleep(0.05)
        console.send_signal(signal.SIGINT)
        time.sleep(0.3)
        console.stdin.write("genesis hi\n:quit\n")
        console.stdin.flush()
        out, err = console.communicate(timeout=30)
    finally:
        if console.poll() is None:
            console.kill()
    assert console.returncode == 0, err
    assert "cancelled waiting" in out
    assert "late" not in out  # the abandoned reply is not mistaken for the next one
    assert out.rstrip().endswith("hello")


def test_interactive_session_with_history_and_heartbeat(kernel, tmp_path):
    import argparse

    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from clients.console import _interactive

    out = io.StringIO()
    history = tmp_path / "history"
    args = argparse.Namespace(endpoint=kernel.endpoint, history=str(history))
    with KernelClient(kernel.endpoint) as client:
        console = Console(client, out)
        console.refresh_roots()
        with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
            keys.send_text("genesis about\r:quit\r")
            assert _interactive(console, args) == 0
    assert '"description": "genesis: The first object' in out.getvalue()
    assert "genesis about" in history.read_text()


def test_progress_shows_the_method_inline_as_it_is_written():
    from batos.wire.protocol import Progress, Result
    from clients.client import ProgressPrinter

    out: list[str] = []
    show = ProgressPrinter(out.append, indent="  ... ")
    for state, detail in [("SYNTHESIZING", "BRICK writes candidate 1"), ("WRITING", "def f(self"), ("WRITING", "):\n    return 1"),
                          ("VALIDATING", "the guardian audits")]:
        show(Progress(id="r", state=state, detail=detail))
    show(Result(id="r", value=1))  # not progress: ignored
    assert "".join(out) == ("  ... [SYNTHESIZING] BRICK writes candidate 1\n  ... [WRITING]\ndef f(self):\n    return 1\n"
                            "  ... [VALIDATING] the guardian audits\n")


WEEKDAY = '''def weekday_name(date_text):
    """Return the English weekday name of a date written 'YYYY-MM-DD'.

    >>> weekday_name('2024-01-01')
    'Monday'
    """
'''


def test_a_pasted_function_becomes_its_own_message_regression_docstring_as_argument():
    """Regression (used as a user): the model translator sent models.weekday_name("2024-01-01",
    "<the docstring>") with the def line dropped from the intent."""
    unloaded = ModelTranslator.__new__(ModelTranslator)  # no llm: a pasted function must not need one
    for translator in (RuleTranslator(), unloaded):
        brief = translator.translate(WEEKDAY, sorted(ROOTS))
        assert (brief.target, brief.selector, brief.args, brief.intent, brief.translated_by) == (
            "genesis", "weekday_name", ["2024-01-01"], WEEKDAY.strip(), "pasted function")


@pytest.mark.parametrize(
    "text",
    [
        WEEKDAY.replace("(date_text)", "(self, date_text)"),  # a method: its object matters, translate as usual
        WEEKDAY.replace(">>> weekday_name('2024-01-01')", ">>> weekday_name(today())"),  # no literal example
        WEEKDAY.replace(">>> weekday_name('2024-01-01')", ">>> weekday_name(date_text='2024-01-01')"),  # keywords
        WEEKDAY + "\nprint(weekday_name('2024-01-01'))\n",  # a script, not a specification
        WEEKDAY + "\ndef other(x):\n    return x\n",  # two functions: which one is the message?
        "def weekday_name(date_text:\n",  # not Python
        "create a method to report the current system time",
    ],
)
def test_only_a_single_pasted_function_with_a_literal_example_skips_translation(text):
    from clients.translate import pasted_brief

    assert pasted_brief(text) is None


def test_a_pasted_function_with_an_import_and_several_arguments():
    from clients.translate import pasted_brief

    text = "import math\n\ndef hyp(a, b):\n    '''The hypotenuse.\n\n    >>> hyp(3, 4.0)\n    5.0\n    '''\n"
    brief = pasted_brief(text)
    assert brief is not None and (brief.selector, brief.args) == ("hyp", [3, 4.0])
